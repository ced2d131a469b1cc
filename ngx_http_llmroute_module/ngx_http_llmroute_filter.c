
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Response filters: X-LLMRoute-* headers on routed responses, and nginx's
 * own HTML error pages (413 from client_max_body_size, 400 on a broken
 * chunked body...) turned into OpenAI-style JSON in llmroute locations.
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_http_llmroute_usage.h>


/* an SSE line longer than this is skipped by the usage scanner */
#define NGX_HTTP_LLMROUTE_CARRY  65536


static ngx_int_t ngx_http_llmroute_header_filter(ngx_http_request_t *r);
static ngx_inline ngx_int_t ngx_http_llmroute_push_header(
    ngx_http_request_t *r, const char *key, size_t len, ngx_str_t *value);
static ngx_int_t ngx_http_llmroute_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llmroute_json_error_page(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_scan_init(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_uint_t check);
static ngx_int_t ngx_http_llmroute_scan(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llmroute_strip(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_chain_t *in);
static void ngx_http_llmroute_strip_sent(ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_stash(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, u_char *cur, off_t cur_start, off_t keep);
static u_char *ngx_http_llmroute_emit(ngx_http_llmroute_ctx_t *ctx,
    u_char *dst, off_t from, off_t to, u_char *cur, off_t cur_start);
static void *ngx_http_llmroute_filter_alloc(void *data, size_t size);
static void ngx_http_llmroute_filter_free(void *data, void *p);
static void ngx_http_llmroute_steer(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_int_t ngx_http_llmroute_hold(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llmroute_release_held(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx);
static ngx_msec_t ngx_http_llmroute_duration(ngx_str_t *s);


/* a response header named by a literal: its length known at compile time */
#define ngx_http_llmroute_header_out(r, key, value)                          \
    ngx_http_llmroute_push_header(r, key, sizeof(key) - 1, value)


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_llmroute_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llmroute_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llmroute_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_header_filter(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_str_t                      v;
    ngx_uint_t                     check;
    ngx_http_llmroute_ctx_t       *ctx;
    ngx_http_llmroute_loc_conf_t  *lcf;

    static ngx_str_t  one = ngx_string("1");

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    if (!lcf->enable || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_llmroute_get_ctx(r, 0);

    if (ctx != NULL && ctx->error_sent) {
        return ngx_http_next_header_filter(r);
    }

    /*
     * A provider answer that is not HTTP/1.x: nginx would relay it raw as
     * HTTP/0.9.  It is a failed attempt (failover through error_page).
     */

    if (ctx != NULL && ctx->decided && r->upstream
        && r->http_version == NGX_HTTP_VERSION_9
        && ctx->http_version != NGX_HTTP_VERSION_9)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llmroute: provider \"%V\" sent no valid HTTP "
                      "response", &ctx->provider->name);

        r->http_version = ctx->http_version;
        r->upstream->headers_in.status_n = 0;

        return NGX_HTTP_BAD_GATEWAY;
    }

    /* nginx's own error pages: no provider response behind them */

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST
        && (r->upstream == NULL || r->err_status != 0
            || r->upstream->headers_in.status_n == 0))
    {
        ctx = ngx_http_llmroute_get_ctx(r, 1);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_llmroute_json_error_page(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL || !ctx->decided) {
        return ngx_http_next_header_filter(r);
    }

    /*
     * llmroute_escalate: a non-streamed answer of a tier that has one
     * above it is withheld until its quality is known; only such an answer
     * needs its choices read (else usage is enough, see the usage scanner)
     */

    check = lcf->escalate && !ctx->req.stream && !ctx->escalated
            && ctx->want.pin == NGX_HTTP_LLMROUTE_PIN_NONE
            && ctx->model->tier < NGX_HTTP_LLMROUTE_TIER_COMPLEX;

    if (ngx_http_llmroute_scan_init(r, ctx, check) != NGX_OK) {
        return NGX_ERROR;
    }

    if (r->upstream) {

        /*
         * a provider's failure that reaches the client (its own error on
         * the last attempt, or no retries) is recorded now, not at the log
         * phase: the client may send its next request, to another worker,
         * as soon as it has this one, and Retry-After must already hold
         */

        if (r->upstream->headers_in.status_n == NGX_HTTP_TOO_MANY_REQUESTS
            || r->upstream->headers_in.status_n
               >= NGX_HTTP_INTERNAL_SERVER_ERROR)
        {
            ngx_http_llmroute_note_failure(r, ctx);
        }

        ngx_http_llmroute_steer(r, ctx);
    }

    if (lcf->headers) {
        if (ctx->attempts < 10) {
            /* the usual single digit: from a constant, not allocated */
            v.data = (u_char *) "0123456789" + ctx->attempts;
            v.len = 1;

        } else {
            p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
            if (p == NULL) {
                return NGX_ERROR;
            }

            v.data = p;
            v.len = ngx_http_llmroute_decimal(p, ctx->attempts) - p;
        }

        if (ngx_http_llmroute_header_out(r, "X-LLMRoute-Provider",
                                         &ctx->provider->name) != NGX_OK
            || ngx_http_llmroute_header_out(r, "X-LLMRoute-Model",
                                            &ctx->model->id) != NGX_OK
            || ngx_http_llmroute_header_out(r, "X-LLMRoute-Tier",
                                   &ngx_http_llmroute_tier_names[ctx->tier])
               != NGX_OK
            || ngx_http_llmroute_header_out(r, "X-LLMRoute-Attempts", &v)
               != NGX_OK
            || (ctx->escalated
                && ngx_http_llmroute_header_out(r, "X-LLMRoute-Escalated",
                                                &one)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    if (check && ctx->usage) {
        ctx->hold = 1;
        ctx->held = NULL;
        ctx->held_last = &ctx->held;
        ctx->held_size = 0;
        return NGX_OK;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llmroute_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                *b;
    ngx_uint_t                last;
    ngx_chain_t              *cl, out;
    ngx_http_llmroute_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llmroute_module);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->hold) {
        return ngx_http_llmroute_hold(r, ctx, in);
    }

    if (ctx->usage) {
        return ctx->strip ? ngx_http_llmroute_strip(r, ctx, in)
                          : ngx_http_llmroute_scan(r, ctx, in);
    }

    if (!ctx->replace_body) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's HTML page, send the JSON body at its end */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    ctx->replace_body = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error.data;
    b->last = ctx->error.data + ctx->error.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_llmroute_json_error_page(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_str_t    msg;
    const char  *code;

    switch (r->headers_out.status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large";
        ngx_str_set(&msg, "request body is larger than this gateway accepts "
                          "(client_max_body_size)");
        break;

    case NGX_HTTP_BAD_REQUEST:
        code = "invalid_request";
        ngx_str_set(&msg, "malformed HTTP request or request body");
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        ngx_str_set(&msg, "the client did not send the request body in time");
        break;

    case NGX_HTTP_NOT_ALLOWED:
        code = "method_not_allowed";
        ngx_str_set(&msg, "method not allowed");
        break;

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        code = "all_providers_failed";
        ngx_str_set(&msg, "the provider could not be reached or did not "
                          "answer in time");
        break;

    default:
        if (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            code = "internal_error";
            ngx_str_set(&msg, "the gateway failed to process the request");

        } else {
            code = "invalid_request";
            ngx_str_set(&msg, "the request was refused");
        }
    }

    if (ngx_http_llmroute_error_json(r, r->headers_out.status, code, &msg,
                                     NULL, &ctx->error)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->replace_body = 1;
    ctx->reject = ngx_http_llmroute_reject_index(code);

    r->headers_out.content_length_n = ctx->error.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_llmroute_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    return ngx_http_llmroute_push_header(r, key, ngx_strlen(key), value);
}


static ngx_inline ngx_int_t
ngx_http_llmroute_push_header(ngx_http_request_t *r, const char *key,
    size_t len, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) key;
    h->key.len = len;
    h->value = *value;

    return NGX_OK;
}


/*
 * A provider's successful JSON or SSE answer is watched for its usage;
 * the body passes unchanged, except the usage-only chunk of a stream whose
 * client did not ask for usage (the module asked for it).
 */

static ngx_int_t
ngx_http_llmroute_scan_init(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t check)
{
    ngx_str_t                  *ct;
    ngx_uint_t                  sse;
    ngx_http_llmroute_usage_t  *u;

    if (r->upstream == NULL || r->header_only || ctx->count_tokens
        || r->upstream->headers_in.status_n < 200
        || r->upstream->headers_in.status_n >= 300)
    {
        return NGX_OK;
    }

    /*
     * the module never forwards the client's Accept-Encoding; a location
     * that sets one itself gets answers it cannot read: billed by the
     * admission estimate, never as free
     */

    if (r->headers_out.content_encoding != NULL) {
        ctx->encoded = 1;
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llmroute: %V answered with Content-Encoding \"%V\": "
                      "usage unreadable, billed by estimate (remove "
                      "\"proxy_set_header Accept-Encoding\")",
                      &ctx->provider->name,
                      &r->headers_out.content_encoding->value);
        return NGX_OK;
    }

    /* as providers send it first (a fixed-size memcmp() is two loads) */

    ct = &r->headers_out.content_type;

    if (ct->len >= 17
        && (ngx_memcmp(ct->data, "text/event-stream", 17) == 0
            || ngx_http_llmroute_equal_lc(ct->data, "text/event-stream", 17)))
    {
        sse = 1;

    } else if (ct->len >= 16
               && (ngx_memcmp(ct->data, "application/json", 16) == 0
                   || ngx_http_llmroute_equal_lc(ct->data, "application/json",
                                                 16)))
    {
        sse = 0;

    } else {
        return NGX_OK;
    }

    /* not ngx_pcalloc(): init zeroes it */

    u = ngx_palloc(r->pool, sizeof(ngx_http_llmroute_usage_t));
    if (u == NULL) {
        return NGX_ERROR;
    }

    /* an SSE line carried across buffers: grown when one needs it */

    if (ngx_http_llmroute_usage_init(u,
            (sse ? NGX_HTTP_LLMROUTE_USAGE_SSE
                 : check ? NGX_HTTP_LLMROUTE_USAGE_JSON
                           |NGX_HTTP_LLMROUTE_USAGE_JSON_CHECK
                         : NGX_HTTP_LLMROUTE_USAGE_JSON
                           |NGX_HTTP_LLMROUTE_USAGE_JSON_LAZY)
            | ngx_http_llmroute_formats[ctx->req.format].usage_flags,
            NULL, sse ? NGX_HTTP_LLMROUTE_CARRY : 0,
            ngx_http_llmroute_filter_alloc, ngx_http_llmroute_filter_free,
            r->pool)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->usage = u;
    u->length = r->headers_out.content_length_n;

    /* the copy filter turns file buffers into memory ones for us */
    r->filter_need_in_memory = 1;

    if (sse && ctx->strip_usage) {
        ctx->strip = 1;
        ngx_http_clear_content_length(r);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_scan(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf) && cl->buf->last > cl->buf->pos) {
            (void) ngx_http_llmroute_usage_feed(ctx->usage, cl->buf->pos,
                                                cl->buf->last - cl->buf->pos);
        }

        if (cl->buf->last_buf) {
            ngx_http_llmroute_usage_finish(ctx->usage, NULL);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * Strip mode: the stream is re-emitted into buffers of our own, minus the
 * usage-only events the scanner reports.  Bytes the scanner has not
 * decided yet (at most one event) wait in ctx->stash, which always holds
 * the stream bytes [ctx->out, offset of the current buffer).  Output
 * buffers are reused once the next filters have sent them (free/busy
 * chains, as the gzip and sub filters do), and an input buffer counts as
 * consumed only when the copy made of it has been sent (its shadow): the
 * provider is read no faster than the client takes the stream, and a
 * stream of any length needs a few buffers of about proxy_buffer_size.
 */

static ngx_int_t
ngx_http_llmroute_strip(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                          *p, *d, *start;
    off_t                            cur_start, keep;
    size_t                           n, size, need;
    ngx_int_t                        rc;
    ngx_uint_t                       last, flush;
    ngx_buf_t                       *b, *ob;
    ngx_chain_t                     *cl, *out, **ll, *ocl;
    ngx_http_llmroute_usage_t       *u;
    ngx_http_llmroute_usage_span_t   span;

    u = ctx->usage;
    out = NULL;
    ll = &out;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->flush) {
            flush = 1;
        }

        size = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        /* room for the stash and this buffer, at most */

        need = (u->offset - ctx->out) + size + 1;

        ocl = ngx_chain_get_free_buf(r->pool, &ctx->free);
        if (ocl == NULL) {
            return NGX_ERROR;
        }

        ob = ocl->buf;

        if ((size_t) (ob->end - ob->start) < need) {
            if (ob->start) {
                (void) ngx_pfree(r->pool, ob->start);
            }

            n = ngx_max(need, 4096);

            ob->start = ngx_pnalloc(r->pool, n);
            if (ob->start == NULL) {
                return NGX_ERROR;
            }

            ob->end = ob->start + n;
        }

        ob->tag = (ngx_buf_tag_t) &ngx_http_llmroute_module;
        ob->shadow = b;
        ob->pos = ob->start;
        ob->last = ob->start;
        ob->memory = 0;
        ob->temporary = 0;

        start = ob->start;
        d = start;
        cur_start = u->offset;

        for (p = b->pos; p < b->pos + size; p += n) {
            n = ngx_http_llmroute_usage_feed_sse(u, p, b->pos + size - p,
                                                 &span);

            if (span.end) {
                d = ngx_http_llmroute_emit(ctx, d, ctx->out, span.start,
                                           b->pos, cur_start);
                ctx->out = span.end;
            }
        }

        if (b->last_buf) {
            ngx_http_llmroute_usage_finish(u, &span);

            if (span.end) {
                d = ngx_http_llmroute_emit(ctx, d, ctx->out, span.start,
                                           b->pos, cur_start);
                ctx->out = span.end;
            }

            last = 1;
        }

        if (u->hold > ctx->out) {
            d = ngx_http_llmroute_emit(ctx, d, ctx->out, u->hold, b->pos,
                                       cur_start);
            ctx->out = u->hold;
        }

        /* keep what is undecided: [out, offset) */

        keep = u->offset - ctx->out;

        if (keep > 2 * NGX_HTTP_LLMROUTE_CARRY + 2) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "llmroute: usage scanner held %O bytes", keep);
            return NGX_ERROR;
        }

        if (keep && ngx_http_llmroute_stash(r, ctx, b->pos, cur_start, keep)
                    != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->stash_start = ctx->out;

        if (d == start && !b->last_buf && !b->flush) {
            /* nothing to send: consumed, and ours goes back */
            b->pos = b->last;
            ob->shadow = NULL;
            ocl->next = ctx->free;
            ctx->free = ocl;
            continue;
        }

        if (d > start) {
            ob->last = d;
            ob->memory = 1;
        }

        ob->last_buf = b->last_buf;
        ob->last_in_chain = b->last_in_chain;
        ob->flush = b->flush || !b->last_buf;

        *ll = ocl;
        ll = &ocl->next;
    }

    *ll = NULL;

    if (out == NULL && in != NULL && !flush && !last) {
        return NGX_OK;
    }

    /* with in == NULL: the client can take more, push what waits */

    rc = ngx_http_next_body_filter(r, out);

    *ll = ctx->busy;            /* busy: what was sent now, then before */
    ctx->busy = out;

    ngx_http_llmroute_strip_sent(ctx);

    return rc;
}


/* buffers the next filters have sent are free again, their input too */

static void
ngx_http_llmroute_strip_sent(ngx_http_llmroute_ctx_t *ctx)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, **ll;

    for (ll = &ctx->busy; *ll; /* void */) {
        cl = *ll;
        b = cl->buf;

        if (ngx_buf_size(b) != 0) {
            ll = &cl->next;
            continue;
        }

        if (b->shadow) {
            b->shadow->pos = b->shadow->last;
            b->shadow = NULL;
        }

        b->pos = b->start;
        b->last = b->start;

        *ll = cl->next;
        cl->next = ctx->free;
        ctx->free = cl;
    }
}


/*
 * ctx->stash becomes the stream bytes [ctx->out, ctx->out + keep): the
 * part before cur_start is in the stash already, the rest in cur.  The
 * stash grows on demand (usually one SSE line, at most one event).
 */

static ngx_int_t
ngx_http_llmroute_stash(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    u_char *cur, off_t cur_start, off_t keep)
{
    u_char  *dst;
    size_t   old, size;

    dst = ctx->stash;
    size = ctx->stash_size;

    if ((size_t) keep > size) {
        size = ngx_max((size_t) keep, ngx_max(2 * ctx->stash_size, 1024));

        dst = ngx_pnalloc(r->pool, size);
        if (dst == NULL) {
            return NGX_ERROR;
        }
    }

    if (ctx->out < cur_start) {
        old = cur_start - ctx->out;
        ngx_memmove(dst, ctx->stash + (ctx->out - ctx->stash_start), old);
        ngx_memcpy(dst + old, cur, keep - old);

    } else {
        ngx_memcpy(dst, cur + (ctx->out - cur_start), keep);
    }

    if (dst != ctx->stash) {
        if (ctx->stash) {
            (void) ngx_pfree(r->pool, ctx->stash);
        }

        ctx->stash = dst;
        ctx->stash_size = size;
    }

    return NGX_OK;
}


/* stream bytes [from, to): first from the stash, then the current buffer */

static u_char *
ngx_http_llmroute_emit(ngx_http_llmroute_ctx_t *ctx, u_char *dst, off_t from,
    off_t to, u_char *cur, off_t cur_start)
{
    off_t  n;

    if (from < cur_start) {
        n = ngx_min(to, cur_start) - from;
        dst = ngx_cpymem(dst, ctx->stash + (from - ctx->stash_start), n);
        from += n;
    }

    if (from < to) {
        dst = ngx_cpymem(dst, cur + (from - cur_start), to - from);
    }

    return dst;
}


static void *
ngx_http_llmroute_filter_alloc(void *data, size_t size)
{
    return ngx_palloc(data, size);
}


/* large blocks (yajl's buffers on a big answer) go back at once */

static void
ngx_http_llmroute_filter_free(void *data, void *p)
{
    (void) ngx_pfree(data, p);
}


/*
 * A provider that says it has no requests (or tokens) left this window
 * ("x-ratelimit-remaining-requests: 0", as OpenAI, Groq, Together send) is
 * cooled down until its "x-ratelimit-reset-*" time: the next requests go
 * elsewhere instead of collecting a 429.
 */

static void
ngx_http_llmroute_steer(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx)
{
    size_t                               len;
    ngx_uint_t                           i, k, seen, out;
    ngx_msec_t                           wait;
    ngx_list_part_t                     *part;
    ngx_table_elt_t                     *h;
    ngx_http_llmroute_main_conf_t       *lmcf;

    static const char  *remaining[] = {
        "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"
    };
    static const char  *reset[] = {
        "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"
    };

    /*
     * one pass over the answer's headers for both counts (a search for
     * each cost twice as much on every answer); the first header of a
     * name decides, bit k of seen and out for remaining[k]
     */

    seen = 0;
    out = 0;
    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        len = h[i].key.len;

        if (!h[i].hash || (len != 30 && len != 28)) {
            continue;
        }

        k = (len == 30) ? 0 : 1;

        if ((seen & (1 << k))
            || !ngx_http_llmroute_equal_lc(h[i].key.data, remaining[k], len))
        {
            continue;
        }

        seen |= 1 << k;

        if (h[i].value.len == 1 && h[i].value.data[0] == '0') {
            out |= 1 << k;
        }
    }

    for (k = 0; k < 2; k++) {
        if (!(out & (1 << k))) {
            continue;
        }

        h = ngx_http_llmroute_find_header(&r->upstream->headers_in.headers,
                                          reset[k]);

        wait = h ? ngx_http_llmroute_duration(&h->value) : 1000;
        wait = ngx_max(wait, 100);
        wait = ngx_min(wait, 3600000);

        lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

        ngx_http_llmroute_cool_down(lmcf, ctx->provider->index,
                                    (uint64_t) ngx_time() * 1000 + wait);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llmroute: provider \"%V\" reports no %s left, "
                      "cooling down %M ms", &ctx->provider->name,
                      k ? "tokens" : "requests", wait);
    }
}


/* "20", "1s", "6m0s", "12ms", "1.5s" (OpenAI's reset format) to ms */

static ngx_msec_t
ngx_http_llmroute_duration(ngx_str_t *s)
{
    u_char      *p, *last;
    ngx_msec_t   total, n, frac, scale;

    p = s->data;
    last = p + s->len;
    total = 0;

    while (p < last) {
        n = 0;
        frac = 0;
        scale = 1;

        if (*p < '0' || *p > '9') {
            return 1000;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            n = n * 10 + (*p++ - '0');
        }

        if (p < last && *p == '.') {
            p++;

            while (p < last && *p >= '0' && *p <= '9') {
                if (scale < 1000) {
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }

                p++;
            }
        }

        if (p == last) {
            return total + n * 1000 + frac * 1000 / scale;  /* seconds */
        }

        if (last - p >= 2 && p[0] == 'm' && p[1] == 's') {
            total += n;
            p += 2;

        } else if (*p == 'h') {
            total += n * 3600000 + frac * 3600000 / scale;
            p++;

        } else if (*p == 'm') {
            total += n * 60000 + frac * 60000 / scale;
            p++;

        } else if (*p == 's') {
            total += n * 1000 + frac * 1000 / scale;
            p++;

        } else {
            return 1000;
        }
    }

    return total;
}


/* at most this much of an answer is withheld for the quality checks */
#define NGX_HTTP_LLMROUTE_HOLD_MAX  (8 * 1024 * 1024)


/*
 * Escalation: the answer is copied aside (the upstream buffer is reused)
 * and scanned; at its end either it goes to the client, headers first, or
 * it is billed and dropped, and the request is redirected through the
 * location's error_page to be sent to the next tier up.
 */

static ngx_int_t
ngx_http_llmroute_hold(ngx_http_request_t *r, ngx_http_llmroute_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                      size;
    ngx_buf_t                  *b;
    ngx_uint_t                  last, bad, at_limit;
    ngx_chain_t                *cl, *nl;
    ngx_http_llmroute_usage_t  *u;

    u = ctx->usage;
    last = 0;

    for (cl = in; cl; cl = cl->next) {
        size = ngx_buf_in_memory(cl->buf) ? cl->buf->last - cl->buf->pos : 0;

        if (size) {
            (void) ngx_http_llmroute_usage_feed(u, cl->buf->pos, size);

            b = ngx_create_temp_buf(r->pool, size);
            if (b == NULL) {
                return NGX_ERROR;
            }

            b->last = ngx_cpymem(b->pos, cl->buf->pos, size);

            nl = ngx_alloc_chain_link(r->pool);
            if (nl == NULL) {
                return NGX_ERROR;
            }

            nl->buf = b;
            nl->next = NULL;
            *ctx->held_last = nl;
            ctx->held_last = &nl->next;
            ctx->held_size += size;

            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        if (ctx->held_size > NGX_HTTP_LLMROUTE_HOLD_MAX) {
            return ngx_http_llmroute_release_held(r, ctx);
        }

        return NGX_OK;
    }

    ngx_http_llmroute_usage_finish(u, NULL);

    /*
     * a length stop at the client's own max_tokens is what it asked for
     * (Anthropic clients always set one): escalating it would bill twice
     * for an answer it cut itself; stopped below it, the provider cut short
     */

    at_limit = u->finish_reason == NGX_HTTP_LLMROUTE_FINISH_LENGTH
               && ctx->req.max_tokens >= 0
               && (u->completion_tokens < 0
                   || u->completion_tokens >= ctx->req.max_tokens);

    bad = !at_limit
          && (u->finish_reason == NGX_HTTP_LLMROUTE_FINISH_LENGTH
              || u->empty_content
              || (ctx->req.json_mode && !u->content_is_json));

    if (!bad || u->malformed || r->connection->error) {
        return ngx_http_llmroute_release_held(r, ctx);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llmroute: answer of %V/%V fails the quality checks "
                  "(finish_reason %V%s%s), escalating",
                  &ctx->provider->name, &ctx->model->id,
                  &ngx_http_llmroute_finish_reasons[u->finish_reason],
                  u->empty_content ? ", empty" : "",
                  ctx->req.json_mode && !u->content_is_json
                  ? ", not JSON" : "");

    ngx_http_llmroute_account_attempt(r, ctx);

    ctx->hold = 0;
    ctx->held = NULL;
    ctx->escalating = 1;

    /* the location's error_page 502 brings the request back to us */
    return NGX_HTTP_BAD_GATEWAY;
}


static ngx_int_t
ngx_http_llmroute_release_held(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                *out, *cl;
    ngx_http_llmroute_usage_t  *u;

    u = ctx->usage;
    out = ctx->held;

    ctx->hold = 0;
    ctx->held = NULL;

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (u->finished) {

        /* the whole answer: its end goes with it */

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
        b->last_in_chain = 1;

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;
        *ctx->held_last = cl;

        if (out == NULL) {
            out = cl;
        }
    }

    return ngx_http_next_body_filter(r, out);
}
