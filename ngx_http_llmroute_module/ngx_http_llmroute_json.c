
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Reads a chat-completion request with jsmn: byte offsets of the members we
 * route on and splice, never a re-serialization.  jsmn keeps its state in a
 * caller-provided token array (no malloc, no recursion), so a deeply nested
 * body costs tokens, not stack.
 */


#include <ngx_http_llmroute_core.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include <ngx_http_llmroute_scan.h>


#define NGX_HTTP_LLMROUTE_IMAGE_TOKENS  765

/* a token's bytes in the body: jsmn leaves the quotes out of strings */
#define ngx_http_llmroute_raw_start(t)                                       \
    ((t)->type == JSMN_STRING ? (t)->start - 1 : (t)->start)
#define ngx_http_llmroute_raw_end(t)                                         \
    ((t)->type == JSMN_STRING ? (t)->end + 1 : (t)->end)



typedef struct {
    u_char                     *body;
    jsmntok_t                  *tok;
    int                         ntok;
    ngx_http_llmroute_req_t    *req;
    ngx_http_llmroute_alloc_pt  alloc;
    void                       *data;
    ngx_http_llmroute_msg_t     system;     /* anthropic "system" */
    unsigned                    has_system:1;
} ngx_http_llmroute_json_t;


static int ngx_http_llmroute_jsmn(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok);
static ngx_int_t ngx_http_llmroute_json_jsmn_path(ngx_http_llmroute_json_t *js,
    u_char *p, u_char *end);
static inline int ngx_http_llmroute_json_skip(ngx_http_llmroute_json_t *js,
    int i);
static int ngx_http_llmroute_json_skip_nested(ngx_http_llmroute_json_t *js,
    int j, int end);
static inline ngx_int_t ngx_http_llmroute_json_key(
    ngx_http_llmroute_json_t *js, int i, const char *name, size_t len);
static ngx_int_t ngx_http_llmroute_json_escaped(ngx_http_llmroute_json_t *js,
    int i, const char *name, size_t len);
static ngx_int_t ngx_http_llmroute_json_member(ngx_http_llmroute_json_t *js,
    int i, ngx_int_t *folded);
static ngx_int_t ngx_http_llmroute_json_member_text(u_char *p, size_t l,
    ngx_uint_t fold);
static ngx_int_t ngx_http_llmroute_json_fail(ngx_http_llmroute_req_t *req,
    ngx_uint_t error, const char *msg, const char *param);
static ngx_int_t ngx_http_llmroute_parse_format(ngx_http_llmroute_req_t *req,
    u_char *body, size_t len, ngx_http_llmroute_alloc_pt alloc, void *data,
    ngx_uint_t format);
static ngx_int_t ngx_http_llmroute_json_messages(ngx_http_llmroute_json_t *js,
    int i, int *next);
static ngx_int_t ngx_http_llmroute_json_blocks(ngx_http_llmroute_json_t *js,
    int i, ngx_http_llmroute_msg_t *msg, ngx_uint_t *results);
static ngx_int_t ngx_http_llmroute_json_system(ngx_http_llmroute_json_t *js,
    int i);
static ngx_int_t ngx_http_llmroute_json_message(ngx_http_llmroute_json_t *js,
    int i, ngx_http_llmroute_msg_t *msg, int *next);
static ngx_int_t ngx_http_llmroute_json_content(ngx_http_llmroute_json_t *js,
    int i, ngx_http_llmroute_msg_t *msg);
static ngx_int_t ngx_http_llmroute_json_number(ngx_http_llmroute_json_t *js,
    int i, int64_t *n);
static ngx_int_t ngx_http_llmroute_json_true(ngx_http_llmroute_json_t *js,
    int i);
static ngx_int_t ngx_http_llmroute_json_validate(
    ngx_http_llmroute_json_t *js);
static ngx_int_t ngx_http_llmroute_json_gap(u_char *p, u_char *last,
    u_char sep, ngx_uint_t closers);
static ngx_int_t ngx_http_llmroute_json_literal(u_char *p, u_char *last);
static ngx_uint_t ngx_http_llmroute_json_prescan(u_char *p, u_char *last);
static ngx_int_t ngx_http_llmroute_json_has_ctl(u_char *p, u_char *last);
static ssize_t ngx_http_llmroute_json_unescape(u_char *src, size_t len,
    u_char *dst, size_t size);


ngx_str_t  ngx_http_llmroute_tier_names[] = {
    ngx_string("simple"),
    ngx_string("moderate"),
    ngx_string("complex")
};


/* the per-process token scratch (see ngx_http_llmroute_parse()) */
#define NGX_HTTP_LLMROUTE_SCRATCH  8192

static jsmntok_t  *ngx_http_llmroute_scratch;


/* top-level members we read; a duplicate of any of them is refused */
static ngx_str_t  ngx_http_llmroute_members[] = {
    ngx_string("model"), ngx_string("messages"), ngx_string("stream"),
    ngx_string("stream_options"), ngx_string("max_tokens"),
    ngx_string("max_completion_tokens"), ngx_string("tools"),
    ngx_string("functions"), ngx_string("response_format"),
    ngx_string("system"), ngx_string("prompt_cache_key"),
    ngx_string("metadata"), ngx_null_string
};

/* which of them each format reads (bit per member); others are skipped */
static const uint32_t  ngx_http_llmroute_format_members[] = {
    0x1ff | 0x400 | 0x800,          /* openai: all but "system" */
    0x1 | 0x2 | 0x4 | 0x10 | 0x40 | 0x200 | 0x800
                                    /* anthropic: model messages stream
                                       max_tokens tools system metadata */
};


ngx_int_t
ngx_http_llmroute_parse(ngx_http_llmroute_req_t *req, u_char *body,
    size_t len, ngx_http_llmroute_alloc_pt alloc, void *data)
{
    return ngx_http_llmroute_parse_format(req, body, len, alloc, data,
                                          NGX_HTTP_LLMROUTE_FORMAT_OPENAI);
}


/*
 * An Anthropic Messages API body: "system" (a string or text blocks) and
 * "messages" of content blocks fill the same message array as a chat
 * body, with "system" first.
 */

ngx_int_t
ngx_http_llmroute_parse_anthropic(ngx_http_llmroute_req_t *req, u_char *body,
    size_t len, ngx_http_llmroute_alloc_pt alloc, void *data)
{
    return ngx_http_llmroute_parse_format(req, body, len, alloc, data,
                                          NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC);
}


/*
 * A top-level member whose value the member loop below never descends
 * into, so the scan gives it one token: "tools" and "functions" (their
 * count and span only), a member of another format and an unknown name
 * (both skipped whole).  A name with an escape or one that differs from a
 * read member only in case keeps its tokens.  data: the format.
 */

static ngx_uint_t
ngx_http_llmroute_json_shallow(u_char *name, size_t len, void *data)
{
    uint32_t   read;
    ngx_int_t  m;

    read = ngx_http_llmroute_format_members[(uintptr_t) data];

    m = ngx_http_llmroute_json_member_text(name, len, 0);

    if (m >= 0) {
        return m == 6 || m == 7 || !(read & (1u << m));
    }

    if (memchr(name, '\\', len) != NULL) {
        return 0;
    }

    m = ngx_http_llmroute_json_member_text(name, len, 1);

    return m < 0 || !(read & (1u << m));
}


static ngx_int_t
ngx_http_llmroute_parse_format(ngx_http_llmroute_req_t *req, u_char *body,
    size_t len, ngx_http_llmroute_alloc_pt alloc, void *data,
    ngx_uint_t format)
{
    int                        n, i, k, size, v, all;
    u_char                     *p, *end;
    size_t                     ntok;
    uint32_t                   seen;
    ngx_int_t                  rc, mi, folded;
    ngx_uint_t                 m;
    ngx_http_llmroute_json_t   js;

    ngx_memzero(req, sizeof(ngx_http_llmroute_req_t));

    req->body = body;
    req->len = len;
    req->max_tokens = -1;
    req->format = format;

    end = body + len;
    while (end > body
           && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r'
               || end[-1] == '\t'))
    {
        end--;
    }

    if (end == body) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "request body is empty, a JSON object was expected", NULL);
    }

    /* a JSON value that is not an object is a request error, not JSON's */

    p = body;

    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    if (*p != '{' && *p != '[' && *p != '"') {
        if (ngx_http_llmroute_json_literal(p, end) == NGX_OK) {
            return ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                       "request body must be a JSON object", NULL);
        }

        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_INVALID_JSON,
                                           "request body is not valid JSON",
                                           NULL);
    }

    if (len > 0x7fffffff) {
        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_TOO_COMPLEX,
                                           "request body is too large", NULL);
    }

    js.body = body;
    js.req = req;
    js.alloc = alloc;
    js.data = data;
    js.has_system = 0;

    /*
     * The strict scan (ngx_http_llmroute_scan.c) tokenizes and validates in
     * one pass; the values no reader descends into (an agent's tool
     * schemas) are validated only, one token each.  Tokens live in this
     * process's scratch array, reused by every request (nginx runs one
     * request at a time per worker): no allocation.  Only a body with more
     * tokens than the scratch holds is counted first, then scanned into
     * request memory.  The limit counts every value, shallow ones too.
     */

    if (ngx_http_llmroute_scratch == NULL) {
        ngx_http_llmroute_scratch = malloc(NGX_HTTP_LLMROUTE_SCRATCH
                                           * sizeof(jsmntok_t));
    }

    js.tok = ngx_http_llmroute_scratch;
    ntok = js.tok ? NGX_HTTP_LLMROUTE_SCRATCH : 0;
    n = NGX_HTTP_LLMROUTE_SCAN_NOMEM;
    all = 0;

    if (ntok) {
        n = ngx_http_llmroute_scan_shallow(body, len, js.tok, ntok,
                                           ngx_http_llmroute_json_shallow,
                                           (void *) (uintptr_t) format, &all);
    }

    if (n == NGX_HTTP_LLMROUTE_SCAN_NOMEM) {
        n = ngx_http_llmroute_scan_shallow(body, len, NULL, 0,
                                           ngx_http_llmroute_json_shallow,
                                           (void *) (uintptr_t) format, &all);

        if (n > 0 && all <= NGX_HTTP_LLMROUTE_MAX_TOKENS) {
            js.tok = alloc(data, n * sizeof(jsmntok_t));
            if (js.tok == NULL) {
                return NGX_ERROR;
            }

            n = ngx_http_llmroute_scan_shallow(body, len, js.tok, n,
                                               ngx_http_llmroute_json_shallow,
                                               (void *) (uintptr_t) format,
                                               &all);
        }
    }

    if (n > 0 && all > NGX_HTTP_LLMROUTE_MAX_TOKENS) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_TOO_COMPLEX,
                   "request JSON has too many values", NULL);
    }

#ifdef NGX_HTTP_LLMROUTE_STANDALONE
    if (ngx_http_llmroute_scan_off) {
        n = 0;
    }
#endif

    if (n < 1) {

        /* refused: the jsmn path names the error */

        rc = ngx_http_llmroute_json_jsmn_path(&js, p, end);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        n = js.ntok;

#ifdef NGX_HTTP_LLMROUTE_STANDALONE
        if (!ngx_http_llmroute_scan_off)
#endif
        {
            /* the two disagree (fuzz/fuzz_scan.c looks for this) */
            return ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_INVALID_JSON,
                       "request body is not valid JSON", NULL);
        }

    } else if (js.tok[0].type != JSMN_OBJECT) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "request body must be a JSON object", NULL);
    }

    js.ntok = n;

    req->obj_open = js.tok[0].start + 1;
    req->obj_close = js.tok[0].end - 1;

    seen = 0;
    size = js.tok[0].size;
    i = 1;

    for (k = 0; k < size; k++) {

        if (i + 1 >= n || js.tok[i].type != JSMN_STRING
            || js.tok[i].size != 1)
        {
            return ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_INVALID_JSON,
                       "request body is not valid JSON", NULL);
        }

        v = i + 1;

        mi = ngx_http_llmroute_json_member(&js, i, &folded);

        if (mi < 0) {

            /*
             * {"model":"cheap","Model":"premium"}: providers that match
             * names without case (Go's encoding/json) would run what we
             * did not price
             */

            if (folded >= 0
                && (ngx_http_llmroute_format_members[format]
                    & (1u << folded)))
            {
                return ngx_http_llmroute_json_fail(req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "a member name differs from one the gateway "
                           "reads only in case",
                           (char *) ngx_http_llmroute_members[folded].data);
            }

            i = ngx_http_llmroute_json_skip(&js, v);
            continue;
        }

        m = mi;

        /* a member another format reads: this one passes it untouched */

        if (!(ngx_http_llmroute_format_members[format] & (1u << m))) {
            i = ngx_http_llmroute_json_skip(&js, v);
            continue;
        }

        if (seen & (1u << m)) {
            return ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                       "duplicate member in the request body",
                       (char *) ngx_http_llmroute_members[m].data);
        }

        seen |= 1u << m;

        switch (m) {

        case 0: /* model */
            if (js.tok[v].type != JSMN_STRING) {
                return ngx_http_llmroute_json_fail(req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "\"model\" must be a string", "model");
            }

            req->has_model = 1;
            req->model_start = js.tok[v].start - 1;
            req->model_end = js.tok[v].end + 1;
            req->model.data = body + js.tok[v].start;
            req->model.len = js.tok[v].end - js.tok[v].start;

            if (memchr(req->model.data, '\\', req->model.len) != NULL) {
                u_char   *p;
                ssize_t   l;

                p = alloc(data, req->model.len);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                l = ngx_http_llmroute_json_unescape(req->model.data,
                                                    req->model.len, p,
                                                    req->model.len);
                if (l < 0) {
                    return ngx_http_llmroute_json_fail(req,
                               NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                               "\"model\" is not a valid string", "model");
                }

                req->model.data = p;
                req->model.len = l;
                req->model_escaped = 1;
            }

            break;

        case 1: /* messages */
            if (ngx_http_llmroute_json_messages(&js, v, &i) != NGX_OK) {
                return req->error ? NGX_OK : NGX_ERROR;
            }

            continue;           /* i is past the messages */

        case 2: /* stream */
            if (js.tok[v].type != JSMN_PRIMITIVE
                || (body[js.tok[v].start] != 't'
                    && body[js.tok[v].start] != 'f'
                    && body[js.tok[v].start] != 'n'))
            {
                return ngx_http_llmroute_json_fail(req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "\"stream\" must be a boolean", "stream");
            }

            req->stream = ngx_http_llmroute_json_true(&js, v);
            break;

        case 3: /* stream_options */

            /*
             * usage is asked for whatever the client sent (a client must
             * not switch billing off): null or a non-object is replaced,
             * a false/null include_usage becomes true, a missing one is
             * added; the module strips the usage chunk again
             */

            req->stream_options = 1;
            req->usage_start = js.tok[v].start;
            req->usage_end = js.tok[v].end;
            req->usage_fix = "{\"include_usage\":true}";

            if (js.tok[v].type == JSMN_OBJECT) {
                int  j, e;

                req->usage_start = js.tok[v].start + 1;
                req->usage_end = req->usage_start;
                req->usage_fix = js.tok[v].size ? "\"include_usage\":true,"
                                                : "\"include_usage\":true";
                j = v + 1;

                for (e = 0; e < js.tok[v].size && j + 1 < n; e++) {
                    if (ngx_http_llmroute_json_key(&js, j, "include_usage", 13)
                        == NGX_OK)
                    {
                        if (ngx_http_llmroute_json_true(&js, j + 1)) {
                            req->include_usage = 1;
                            req->usage_fix = NULL;

                        } else {
                            req->usage_start = js.tok[j + 1].start;
                            req->usage_end = js.tok[j + 1].end;
                            req->usage_fix = "true";
                        }
                    }

                    j = ngx_http_llmroute_json_skip(&js, j + 1);
                }
            }

            break;

        case 4: /* max_tokens */
        case 5: /* max_completion_tokens */
            if (js.tok[v].type == JSMN_PRIMITIVE
                && body[js.tok[v].start] == 'n')
            {
                break;
            }

            if (ngx_http_llmroute_json_number(&js, v, &req->max_tokens)
                != NGX_OK)
            {
                return ngx_http_llmroute_json_fail(req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "max_tokens must be a non-negative integer",
                           (char *) ngx_http_llmroute_members[m].data);
            }

            break;

        case 6: /* tools */
        case 7: /* functions */
            if (js.tok[v].type == JSMN_ARRAY) {
                req->ntools += js.tok[v].size;
                req->tools_bytes += js.tok[v].end - js.tok[v].start;

                if (m == 6) {
                    req->tools_start = js.tok[v].start;
                    req->tools_end = js.tok[v].end;
                }

            } else if (!(js.tok[v].type == JSMN_PRIMITIVE
                         && body[js.tok[v].start] == 'n'))
            {
                return ngx_http_llmroute_json_fail(req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "\"tools\" must be an array",
                           (char *) ngx_http_llmroute_members[m].data);
            }

            break;

        case 8: /* response_format */
            if (js.tok[v].type == JSMN_OBJECT) {
                int  j, e;

                j = v + 1;

                for (e = 0; e < js.tok[v].size && j + 1 < n; e++) {
                    if (ngx_http_llmroute_json_key(&js, j, "type", 4) == NGX_OK
                        && js.tok[j + 1].type == JSMN_STRING)
                    {
                        if (ngx_http_llmroute_json_key(&js, j + 1,
                                                       "json_object", 11)
                            == NGX_OK)
                        {
                            req->json_mode = 1;

                        } else if (ngx_http_llmroute_json_key(&js, j + 1,
                                                              "json_schema", 11)
                                   == NGX_OK)
                        {
                            req->json_mode = 1;
                            req->json_schema = 1;
                        }
                    }

                    j = ngx_http_llmroute_json_skip(&js, j + 1);
                }
            }

            break;

        case 9: /* system (anthropic) */
            if (ngx_http_llmroute_json_system(&js, v) != NGX_OK) {
                return req->error ? NGX_OK : NGX_ERROR;
            }

            break;

        case 10: /* prompt_cache_key: a session hint */
            if (js.tok[v].type == JSMN_STRING) {
                req->cache_key.data = body + js.tok[v].start;
                req->cache_key.len = js.tok[v].end - js.tok[v].start;
            }

            break;

        case 11: /* metadata: Anthropic's user_id carries the session */
            if (js.tok[v].type == JSMN_OBJECT) {
                int  j, e;

                j = v + 1;

                for (e = 0; e < js.tok[v].size && j + 1 < n; e++) {
                    if (ngx_http_llmroute_json_key(&js, j, "user_id", 7)
                        == NGX_OK
                        && js.tok[j + 1].type == JSMN_STRING)
                    {
                        req->user_id.data = body + js.tok[j + 1].start;
                        req->user_id.len = js.tok[j + 1].end
                                           - js.tok[j + 1].start;
                    }

                    j = ngx_http_llmroute_json_skip(&js, j + 1);
                }
            }

            break;
        }

        i = ngx_http_llmroute_json_skip(&js, v);
    }

    if (req->msgs == NULL) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "'messages' is a required property", "messages");
    }

    /* Anthropic's "system" member is the first message the classifier sees */

    if (js.has_system) {
        ngx_http_llmroute_msg_t  *msgs;

        msgs = alloc(data, (req->nmsgs + 1) * sizeof(ngx_http_llmroute_msg_t));
        if (msgs == NULL) {
            return NGX_ERROR;
        }

        msgs[0] = js.system;
        ngx_memcpy(&msgs[1], req->msgs,
                   req->nmsgs * sizeof(ngx_http_llmroute_msg_t));

        req->msgs = msgs;
        req->nmsgs++;
        req->text_bytes += js.system.text;
    }

    /* about 4 bytes a token, plus the per-message framing of chat formats */

    req->prompt_tokens = (req->text_bytes + req->tools_bytes + 3) / 4
                         + 4 * req->nmsgs + 3
                         + NGX_HTTP_LLMROUTE_IMAGE_TOKENS * req->images;

    return NGX_OK;
}


/* the process is exiting: its token scratch goes back */

void
ngx_http_llmroute_parse_cleanup(void)
{
    free(ngx_http_llmroute_scratch);
    ngx_http_llmroute_scratch = NULL;
}


static ngx_int_t
ngx_http_llmroute_json_messages(ngx_http_llmroute_json_t *js, int i,
    int *next)
{
    int                       j, e, size;
    size_t                    text;
    ngx_uint_t                images;
    jsmntok_t                *tok;
    ngx_http_llmroute_req_t  *req;
    ngx_http_llmroute_msg_t  *msg;

    req = js->req;
    tok = js->tok;

    if (tok[i].type != JSMN_ARRAY) {
        (void) ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "\"messages\" must be an array", "messages");
        return NGX_DECLINED;
    }

    size = tok[i].size;

    if (size == 0) {
        (void) ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "\"messages\" must contain at least one message",
                   "messages");
        return NGX_DECLINED;
    }

    msg = js->alloc(js->data, size * sizeof(ngx_http_llmroute_msg_t));
    if (msg == NULL) {
        return NGX_ERROR;
    }

    req->msgs = msg;

    /* sums in locals: a store through req would reload the tokens */

    text = 0;
    images = 0;
    j = i + 1;

    for (e = 0; e < size; e++, msg++) {
        if (j >= js->ntok || tok[j].type != JSMN_OBJECT) {
            req->nmsgs = e;
            (void) ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                       "each message must be an object", "messages");
            return NGX_DECLINED;
        }

        if (ngx_http_llmroute_json_message(js, j, msg, &j) != NGX_OK) {
            req->nmsgs = e;
            return req->error ? NGX_DECLINED : NGX_ERROR;
        }

        text += msg->text;
        images += msg->images;
    }

    req->nmsgs = size;
    req->text_bytes += text;
    req->images += images;

    /* past the last message is past the array */

    *next = j;

    return NGX_OK;
}


/*
 * Which member of a message key k names.  A key of the length of "role",
 * "content" or "tool_calls" is that name or none (an escape lengthens a
 * name); only a longer key may hide one behind escapes and is decoded.
 */

#define NGX_HTTP_LLMROUTE_KEY_OTHER       0
#define NGX_HTTP_LLMROUTE_KEY_ROLE        1
#define NGX_HTTP_LLMROUTE_KEY_CONTENT     2
#define NGX_HTTP_LLMROUTE_KEY_TOOL_CALLS  3

static inline ngx_uint_t
ngx_http_llmroute_json_message_key(ngx_http_llmroute_json_t *js,
    jsmntok_t *k)
{
    int      j;
    u_char  *p;

    p = js->body + k->start;

    switch (k->end - k->start) {

    case 4:
        return (k->type == JSMN_STRING && ngx_memcmp(p, "role", 4) == 0)
               ? NGX_HTTP_LLMROUTE_KEY_ROLE : NGX_HTTP_LLMROUTE_KEY_OTHER;

    case 7:
        if (k->type == JSMN_STRING && ngx_memcmp(p, "content", 7) == 0) {
            return NGX_HTTP_LLMROUTE_KEY_CONTENT;
        }

        break;

    case 10:
        if (k->type == JSMN_STRING && ngx_memcmp(p, "tool_calls", 10) == 0) {
            return NGX_HTTP_LLMROUTE_KEY_TOOL_CALLS;
        }

        break;

    default:
        if (k->end - k->start < 4) {
            return NGX_HTTP_LLMROUTE_KEY_OTHER;
        }
    }

    j = k - js->tok;

    if (ngx_http_llmroute_json_key(js, j, "role", 4) == NGX_OK) {
        return NGX_HTTP_LLMROUTE_KEY_ROLE;
    }

    if (ngx_http_llmroute_json_key(js, j, "content", 7) == NGX_OK) {
        return NGX_HTTP_LLMROUTE_KEY_CONTENT;
    }

    if (ngx_http_llmroute_json_key(js, j, "tool_calls", 10) == NGX_OK) {
        return NGX_HTTP_LLMROUTE_KEY_TOOL_CALLS;
    }

    return NGX_HTTP_LLMROUTE_KEY_OTHER;
}


/*
 * One message.  Its members are walked by token pointer, not index: a
 * message's few members cost what their bytes cost, times the messages
 * of a long conversation.
 */

static ngx_int_t
ngx_http_llmroute_json_message(ngx_http_llmroute_json_t *js, int i,
    ngx_http_llmroute_msg_t *msg, int *next)
{
    int          e, size;
    u_char      *p;
    size_t       len;
    jsmntok_t   *tok, *k, *v, *last;
    ngx_int_t    has_role;
    ngx_uint_t   results, role;

    ngx_memzero(msg, sizeof(ngx_http_llmroute_msg_t));

    tok = js->tok;
    last = tok + js->ntok;
    size = tok[i].size;
    has_role = 0;
    results = 0;
    role = NGX_HTTP_LLMROUTE_ROLE_OTHER;
    k = &tok[i + 1];

    for (e = 0; e < size; e++) {
        v = k + 1;

        if (v >= last) {
            break;
        }

        switch (ngx_http_llmroute_json_message_key(js, k)) {

        case NGX_HTTP_LLMROUTE_KEY_ROLE:
            if (v->type != JSMN_STRING) {
                (void) ngx_http_llmroute_json_fail(js->req,
                           NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                           "message \"role\" must be a string", "messages");
                return NGX_DECLINED;
            }

            has_role = 1;
            p = js->body + v->start;
            len = v->end - v->start;

            /* an unknown role leaves the one before (as it always did) */

            switch (len) {

            case 4:
                if (ngx_memcmp(p, "user", 4) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_USER;

                } else if (ngx_memcmp(p, "tool", 4) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_TOOL;
                }

                break;

            case 9:
                if (ngx_memcmp(p, "assistant", 9) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_ASSISTANT;

                } else if (ngx_memcmp(p, "developer", 9) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_SYSTEM;
                }

                break;

            case 6:
                if (ngx_memcmp(p, "system", 6) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_SYSTEM;
                }

                break;

            case 8:
                if (ngx_memcmp(p, "function", 8) == 0) {
                    role = NGX_HTTP_LLMROUTE_ROLE_TOOL;
                }

                break;
            }

            break;

        case NGX_HTTP_LLMROUTE_KEY_CONTENT:
            if (v->type == JSMN_STRING) {

                /* the common case, as json_content() sets it */

                msg->start = v->start;
                msg->end = v->end;
                msg->text = msg->end - msg->start;

            } else if (js->req->format == NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC
                       && v->type == JSMN_ARRAY)
            {
                if (ngx_http_llmroute_json_blocks(js, v - tok, msg, &results)
                    != NGX_OK)
                {
                    return NGX_DECLINED;
                }

            } else if (ngx_http_llmroute_json_content(js, v - tok, msg)
                       != NGX_OK)
            {
                return NGX_DECLINED;
            }

            break;

        case NGX_HTTP_LLMROUTE_KEY_TOOL_CALLS:
            if (v->type != JSMN_ARRAY) {
                break;
            }

            msg->tool_calls = v->size;

            /* arguments the model produced are part of the prompt */
            if (msg->end == msg->start) {
                msg->start = v->start;
                msg->end = v->end;
                msg->text = msg->end - msg->start;
            }

            break;
        }

        /* past the value: json_skip() by pointer */

        k = v + 1;

        if (k < last && k->start < v->end) {
            k = tok + ngx_http_llmroute_json_skip_nested(js, k - tok, v->end);
        }
    }

    /* past its last member is past the message */

    *next = (e == size) ? k - tok : ngx_http_llmroute_json_skip(js, i);

    if (!has_role) {
        (void) ngx_http_llmroute_json_fail(js->req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "each message needs a \"role\"", "messages");
        return NGX_DECLINED;
    }

    /* a user turn of tool results only carries tool output, not an ask */

    if (results && role == NGX_HTTP_LLMROUTE_ROLE_USER) {
        role = NGX_HTTP_LLMROUTE_ROLE_TOOL;
    }

    msg->role = role;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_json_content(ngx_http_llmroute_json_t *js, int i,
    ngx_http_llmroute_msg_t *msg)
{
    int  j, e, p, f;

    switch (js->tok[i].type) {

    case JSMN_STRING:
        msg->start = js->tok[i].start;
        msg->end = js->tok[i].end;
        msg->text = msg->end - msg->start;
        return NGX_OK;

    case JSMN_ARRAY:
        msg->start = js->tok[i].start;
        msg->end = js->tok[i].end;

        /* content parts: count images, text stays in the raw span */

        j = i + 1;

        for (e = 0; e < js->tok[i].size && j < js->ntok; e++) {
            if (js->tok[j].type == JSMN_OBJECT) {
                p = j + 1;

                for (f = 0; f < js->tok[j].size && p + 1 < js->ntok; f++) {

                    /* only text counts as prompt text, not base64 images */

                    if (ngx_http_llmroute_json_key(js, p, "text", 4) == NGX_OK
                        && js->tok[p + 1].type == JSMN_STRING)
                    {
                        msg->text += js->tok[p + 1].end - js->tok[p + 1].start;
                    }

                    if (ngx_http_llmroute_json_key(js, p, "type", 4) == NGX_OK
                        && (ngx_http_llmroute_json_key(js, p + 1,
                                                       "image_url", 9)
                            == NGX_OK
                            || ngx_http_llmroute_json_key(js, p + 1,
                                                          "input_image", 11)
                               == NGX_OK
                            || ngx_http_llmroute_json_key(js, p + 1,
                                                          "image", 5)
                               == NGX_OK))
                    {
                        msg->images++;
                    }

                    p = ngx_http_llmroute_json_skip(js, p + 1);
                }
            }

            j = ngx_http_llmroute_json_skip(js, j);
        }

        return NGX_OK;

    case JSMN_PRIMITIVE:
        if (js->body[js->tok[i].start] == 'n') {
            return NGX_OK;
        }

        /* fall through */

    default:
        (void) ngx_http_llmroute_json_fail(js->req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "message \"content\" must be a string or an array of parts",
                   "messages");
        return NGX_DECLINED;
    }
}


/*
 * The error of a body the scan refused, as the module named it before the
 * scan existed: the depth prescan, jsmn, then the checks of what jsmn lets
 * through.  NGX_DECLINED: no error found, js->tok holds jsmn's tokens.
 */

static ngx_int_t
ngx_http_llmroute_json_jsmn_path(ngx_http_llmroute_json_t *js, u_char *p,
    u_char *end)
{
    int                         n;
    u_char                     *body;
    size_t                      len, ntok;
    ngx_http_llmroute_req_t    *req;

    body = js->body;
    len = js->req->len;     /* jsmn reads the trailing whitespace too */
    req = js->req;

    if (ngx_http_llmroute_json_prescan(p, end) != NGX_HTTP_LLMROUTE_OK) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "request JSON is nested too deeply", NULL);
    }

    /* the scratch array, as the scan; counted first when too small */

    js->tok = ngx_http_llmroute_scratch;
    ntok = js->tok ? NGX_HTTP_LLMROUTE_SCRATCH : 0;
    n = JSMN_ERROR_NOMEM;

    if (ntok) {
        n = ngx_http_llmroute_jsmn(body, len, js->tok, ntok);
    }

    if (n == JSMN_ERROR_NOMEM) {
        n = ngx_http_llmroute_jsmn(body, len, NULL, 0);

        if (n > NGX_HTTP_LLMROUTE_MAX_TOKENS) {
            return ngx_http_llmroute_json_fail(req,
                       NGX_HTTP_LLMROUTE_TOO_COMPLEX,
                       "request JSON has too many values", NULL);
        }

        if (n > 0) {
            ntok = n;

            js->tok = js->alloc(js->data, ntok * sizeof(jsmntok_t));
            if (js->tok == NULL) {
                return NGX_ERROR;
            }

            n = ngx_http_llmroute_jsmn(body, len, js->tok, ntok);
        }
    }

    if (n == JSMN_ERROR_PART) {
        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_INVALID_JSON,
                   "request body is not valid JSON: unexpected end of input",
                   NULL);
    }

    if (n < 1) {
        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_INVALID_JSON,
                                           "request body is not valid JSON",
                                           NULL);
    }

    /* trailing bytes (a second value, a NUL jsmn stopped at) are invalid */

    if (ngx_http_llmroute_raw_end(&js->tok[0]) != end - body) {
        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_INVALID_JSON,
                   "request body is not valid JSON: unexpected data after "
                   "the top-level value", NULL);
    }

    if (js->tok[0].type != JSMN_OBJECT) {
        return ngx_http_llmroute_json_fail(req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "request body must be a JSON object", NULL);
    }

    js->ntok = n;

    if (ngx_http_llmroute_json_validate(js) != NGX_OK) {
        return ngx_http_llmroute_json_fail(req, NGX_HTTP_LLMROUTE_INVALID_JSON,
                   "request body is not valid JSON: misplaced separator, "
                   "invalid literal or control character", NULL);
    }

    return NGX_DECLINED;
}


/*
 * Anthropic content blocks.  The span is the whole array (raw), as for
 * chat content parts; text, thinking and tool input count as prompt text,
 * base64 sources do not.  *results: every block was a tool_result.
 */

static ngx_int_t
ngx_http_llmroute_json_blocks(ngx_http_llmroute_json_t *js, int i,
    ngx_http_llmroute_msg_t *msg, ngx_uint_t *results)
{
    int         j, e, p, f, v;
    ngx_uint_t  others;

    msg->start = js->tok[i].start;
    msg->end = js->tok[i].end;

    others = 0;
    j = i + 1;

    for (e = 0; e < js->tok[i].size && j < js->ntok; e++) {

        if (js->tok[j].type != JSMN_OBJECT) {
            (void) ngx_http_llmroute_json_fail(js->req,
                       NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                       "each content block must be an object", "messages");
            return NGX_DECLINED;
        }

        p = j + 1;

        for (f = 0; f < js->tok[j].size && p + 1 < js->ntok; f++) {
            v = p + 1;

            if (ngx_http_llmroute_json_key(js, p, "type", 4) == NGX_OK) {
                if (js->tok[v].type != JSMN_STRING) {
                    (void) ngx_http_llmroute_json_fail(js->req,
                               NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                               "content block \"type\" must be a string",
                               "messages");
                    return NGX_DECLINED;
                }

                if (ngx_http_llmroute_json_key(js, v, "tool_result", 11)
                    == NGX_OK)
                {
                    /* the tool's output: text, not the user's ask */
                    p = ngx_http_llmroute_json_skip(js, v);
                    continue;
                }

                others++;

                if (ngx_http_llmroute_json_key(js, v, "image", 5) == NGX_OK
                    || ngx_http_llmroute_json_key(js, v, "document", 8)
                       == NGX_OK)
                {
                    msg->images++;

                } else if (ngx_http_llmroute_json_key(js, v, "tool_use", 8)
                           == NGX_OK
                           || ngx_http_llmroute_json_key(js, v,
                                                         "server_tool_use", 15)
                              == NGX_OK)
                {
                    msg->tool_calls++;
                }

            } else if ((ngx_http_llmroute_json_key(js, p, "text", 4) == NGX_OK
                        || ngx_http_llmroute_json_key(js, p, "thinking", 8)
                           == NGX_OK)
                       && js->tok[v].type == JSMN_STRING)
            {
                msg->text += js->tok[v].end - js->tok[v].start;

            } else if (ngx_http_llmroute_json_key(js, p, "input", 5) == NGX_OK
                       || (ngx_http_llmroute_json_key(js, p, "content", 7)
                           == NGX_OK
                           && js->tok[v].type == JSMN_STRING))
            {
                /* tool arguments, a tool result's text */
                msg->text += js->tok[v].end - js->tok[v].start;

            } else if (ngx_http_llmroute_json_key(js, p, "content", 7)
                       == NGX_OK
                       && js->tok[v].type == JSMN_ARRAY)
            {
                ngx_http_llmroute_msg_t  inner;
                ngx_uint_t               dummy;

                ngx_memzero(&inner, sizeof(ngx_http_llmroute_msg_t));

                if (ngx_http_llmroute_json_blocks(js, v, &inner, &dummy)
                    != NGX_OK)
                {
                    return NGX_DECLINED;
                }

                msg->text += inner.text;
                msg->images += inner.images;
            }

            p = ngx_http_llmroute_json_skip(js, v);
        }

        j = ngx_http_llmroute_json_skip(js, j);
    }

    *results = (others == 0 && js->tok[i].size > 0);

    return NGX_OK;
}


/* Anthropic "system": a string or an array of text blocks */

static ngx_int_t
ngx_http_llmroute_json_system(ngx_http_llmroute_json_t *js, int i)
{
    ngx_uint_t  results;

    ngx_memzero(&js->system, sizeof(ngx_http_llmroute_msg_t));
    js->system.role = NGX_HTTP_LLMROUTE_ROLE_SYSTEM;

    switch (js->tok[i].type) {

    case JSMN_STRING:
        js->system.start = js->tok[i].start;
        js->system.end = js->tok[i].end;
        js->system.text = js->system.end - js->system.start;
        break;

    case JSMN_ARRAY:
        if (ngx_http_llmroute_json_blocks(js, i, &js->system, &results)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        break;

    default:
        (void) ngx_http_llmroute_json_fail(js->req,
                   NGX_HTTP_LLMROUTE_INVALID_REQUEST,
                   "\"system\" must be a string or an array of text blocks",
                   "system");
        return NGX_DECLINED;
    }

    js->has_system = 1;

    return NGX_OK;
}


/*
 * jsmn checks brackets, strings and escapes but lets separators slide
 * ("[1,,2]", "{\"a\":1,}", "{\"a\" 1}") and takes any word starting
 * like a literal.  This pass checks what lies between its tokens.
 */

static ngx_int_t
ngx_http_llmroute_json_validate(ngx_http_llmroute_json_t *js)
{
    int         i;
    u_char     *b;
    jsmntok_t  *t, *prev, *parent;

    b = js->body;

    for (i = 1; i < js->ntok; i++) {
        t = &js->tok[i];
        prev = &js->tok[i - 1];

        if (t->parent < 0) {
            return NGX_ERROR;
        }

        parent = &js->tok[t->parent];

        if (t->type == JSMN_PRIMITIVE
            && ngx_http_llmroute_json_literal(b + t->start, b + t->end)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (t->type == JSMN_STRING
            && ngx_http_llmroute_json_has_ctl(b + t->start, b + t->end))
        {
            return NGX_ERROR;
        }

        if (parent->type == JSMN_OBJECT
            && (t->type != JSMN_STRING || t->size != 1))
        {
            return NGX_ERROR;   /* a key without a value */
        }

        /* a value's parent string must be a key of an object */

        if (parent->type == JSMN_STRING
            && (parent->parent < 0
                || js->tok[parent->parent].type != JSMN_OBJECT))
        {
            return NGX_ERROR;
        }

        if ((t->type == JSMN_OBJECT || t->type == JSMN_ARRAY) && t->size == 0
            && ngx_http_llmroute_json_gap(b + t->start + 1, b + t->end - 1,
                                          0, 0)
               != NGX_OK)
        {
            return NGX_ERROR;   /* "{,}", "[:]" */
        }

        if (t->parent == i - 1) {

            /* the first child of a container, or the value of a key */

            if (prev->type == JSMN_STRING) {
                if (ngx_http_llmroute_json_gap(b + prev->end + 1,
                        b + ngx_http_llmroute_raw_start(t), ':', 0)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (ngx_http_llmroute_json_gap(b + prev->start + 1,
                           b + ngx_http_llmroute_raw_start(t), 0, 0)
                       != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        /* after the previous sibling's subtree: closers, then one comma */

        if (ngx_http_llmroute_json_gap(b + ngx_http_llmroute_raw_end(prev),
                                       b + ngx_http_llmroute_raw_start(t),
                                       ',', 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* the end: only closers after the last token */

    if (js->ntok > 1) {
        t = &js->tok[js->ntok - 1];

        if (ngx_http_llmroute_json_gap(b + ngx_http_llmroute_raw_end(t),
                                       b + js->tok[0].end, 0, 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_http_llmroute_json_gap(b + js->tok[0].start + 1,
                                          b + js->tok[0].end, 0, 1)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* whitespace, closing brackets (when allowed), then sep (if any) once */

static ngx_int_t
ngx_http_llmroute_json_gap(u_char *p, u_char *last, u_char sep,
    ngx_uint_t closers)
{
    ngx_uint_t  seen;

    seen = 0;

    for ( /* void */ ; p < last; p++) {
        switch (*p) {

        case ' ': case '\t': case '\n': case '\r':
            break;

        case '}': case ']':
            if (!closers || seen) {
                return NGX_ERROR;
            }

            break;

        default:
            if (*p != sep || sep == 0 || seen) {
                return NGX_ERROR;
            }

            seen = 1;
        }
    }

    return (sep == 0 || seen) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_llmroute_json_literal(u_char *p, u_char *last)
{
    size_t  len;

    len = last - p;

    if ((len == 4 && ngx_memcmp(p, "true", 4) == 0)
        || (len == 5 && ngx_memcmp(p, "false", 5) == 0)
        || (len == 4 && ngx_memcmp(p, "null", 4) == 0))
    {
        return NGX_OK;
    }

    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */

    if (p < last && *p == '-') {
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return NGX_ERROR;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && *p == '.') {
        p++;

        if (p == last || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    return p == last ? NGX_OK : NGX_ERROR;
}


/*
 * Before jsmn: the nesting depth (jsmn closes a bracket by walking up the
 * already closed ones, quadratic in depth).  Strings are skipped with
 * memchr(), so the pass costs little more than reading the structure.
 */

#define NGX_HTTP_LLMROUTE_MAX_DEPTH  64

static ngx_uint_t
ngx_http_llmroute_json_prescan(u_char *p, u_char *last)
{
    u_char      *q;
    ngx_uint_t   depth, n;

    depth = 0;

    while (p < last) {

        switch (*p++) {

        case '"':
            for ( ;; ) {
                q = memchr(p, '"', last - p);

                if (q == NULL) {
                    return NGX_HTTP_LLMROUTE_OK;    /* jsmn says "part" */
                }

                /* an odd run of backslashes escapes the quote */

                for (n = 0; q - n > p && q[-1 - (ssize_t) n] == '\\'; n++) {
                    /* void */
                }

                p = q + 1;

                if (n % 2 == 0) {
                    break;
                }
            }

            break;

        case '{': case '[':
            if (++depth > NGX_HTTP_LLMROUTE_MAX_DEPTH) {
                return NGX_HTTP_LLMROUTE_TOO_COMPLEX;
            }

            break;

        case '}': case ']':
            depth -= depth ? 1 : 0;
            break;
        }
    }

    return NGX_HTTP_LLMROUTE_OK;
}


/* a raw control character in a string (JSON forbids, jsmn lets through) */

static ngx_int_t
ngx_http_llmroute_json_has_ctl(u_char *p, u_char *last)
{
    uint64_t  w;

    /* eight bytes at a time: the classic "has a byte below n" test */

    for ( /* void */ ; last - p >= 8; p += 8) {
        ngx_memcpy(&w, p, 8);

        if ((w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL) {
            break;
        }
    }

    for ( /* void */ ; p < last; p++) {
        if (*p < 0x20) {
            return 1;
        }
    }

    return 0;
}


/*
 * jsmn_parse() with its parser in a local of a function that has all of
 * jsmn inlined ("flatten"): the compiler then keeps the parser's position
 * in a register.  Called on a parser behind a pointer, jsmn loads and
 * stores it for every byte, since a char read may alias it; this halves
 * jsmn's instructions per byte.
 */

#if (__GNUC__)
__attribute__((flatten))
#endif
static int
ngx_http_llmroute_jsmn(u_char *body, size_t len, jsmntok_t *tok, size_t ntok)
{
    jsmn_parser  parser;

    jsmn_init(&parser);

    return jsmn_parse(&parser, (char *) body, len, tok, ntok);
}


/*
 * Index of the token after token i and everything nested in it: the first
 * one that starts at its end or later.  Inline: a value is most often a
 * string or a number, whose next token is the answer.
 */

static inline int
ngx_http_llmroute_json_skip(ngx_http_llmroute_json_t *js, int i)
{
    int  j;

    j = i + 1;

    if (j >= js->ntok || js->tok[j].start >= js->tok[i].end) {
        return j;
    }

    return ngx_http_llmroute_json_skip_nested(js, j, js->tok[i].end);
}


/*
 * Past a container whose token j is nested: tokens are in the body's
 * order, their starts increase, so past a large one (an agent's tool
 * schemas, thousands of tokens) a galloping then binary search finds the
 * first token at end or later in a few dozen steps.
 */

static int
ngx_http_llmroute_json_skip_nested(ngx_http_llmroute_json_t *js, int j,
    int end)
{
    int         lo, hi, mid, step;
    jsmntok_t  *tok;

    tok = js->tok;

    /* tok[lo] is nested; the answer is in (lo, hi] */

    lo = j;
    hi = js->ntok;

    for (step = 1; lo + step < hi && tok[lo + step].start < end; step *= 2) {
        lo += step;
    }

    hi = ngx_min(hi, lo + step);

    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;

        if (tok[mid].start < end) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    return hi;
}


/*
 * A string token equal to name; keys with escapes are decoded first.
 * Inline with a constant name: a name of the same length is compared in
 * place (the compiler unrolls the memcmp); only a longer one that starts
 * with an escape or the name's first byte may hide an escape (an escape
 * only lengthens a name) and goes through the call.
 */

static inline ngx_int_t
ngx_http_llmroute_json_key(ngx_http_llmroute_json_t *js, int i,
    const char *name, size_t len)
{
    u_char  *p;
    size_t   l;

    p = js->body + js->tok[i].start;
    l = js->tok[i].end - js->tok[i].start;

    if (l == len) {
        return (js->tok[i].type == JSMN_STRING
                && ngx_memcmp(p, name, len) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    if (l < len || (*p != '\\' && *p != (u_char) name[0])) {
        return NGX_DECLINED;
    }

    return ngx_http_llmroute_json_escaped(js, i, name, len);
}


/* a key with an escape equal to name */

static ngx_int_t
ngx_http_llmroute_json_escaped(ngx_http_llmroute_json_t *js, int i,
    const char *name, size_t len)
{
    u_char   *p, buf[32];
    size_t    l;
    ssize_t   dl;

    if (js->tok[i].type != JSMN_STRING) {
        return NGX_DECLINED;
    }

    p = js->body + js->tok[i].start;
    l = js->tok[i].end - js->tok[i].start;

    /* "mod\u0065l" is "model" to the provider, so it is to us */

    if (l > len && l <= 6 * len && memchr(p, '\\', l) != NULL) {
        dl = ngx_http_llmroute_json_unescape(p, l, buf, sizeof(buf));

        if (dl == (ssize_t) len && ngx_memcmp(buf, name, len) == 0) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Which of ngx_http_llmroute_members[] a top-level key names, -1 when
 * none; then *folded: which one it names with ASCII letters compared
 * without case.  By the key's length first (two names share one at most),
 * then its bytes; a key with an escape is decoded first.
 */

static ngx_int_t
ngx_http_llmroute_json_member(ngx_http_llmroute_json_t *js, int i,
    ngx_int_t *folded)
{
    u_char     *p;
    size_t      l;
    ssize_t     dl;
    ngx_int_t   m;
    u_char      buf[32];

    p = js->body + js->tok[i].start;
    l = js->tok[i].end - js->tok[i].start;

    m = ngx_http_llmroute_json_member_text(p, l, 0);
    if (m >= 0) {
        return m;
    }

    *folded = ngx_http_llmroute_json_member_text(p, l, 1);

    if (*folded >= 0 || l > 6 * 21 || memchr(p, '\\', l) == NULL) {
        return -1;
    }

    /* "mod\u0065l" is "model" to the provider, so it is to us */

    dl = ngx_http_llmroute_json_unescape(p, l, buf, sizeof(buf));
    if (dl < 0) {
        return -1;
    }

    m = ngx_http_llmroute_json_member_text(buf, dl, 0);

    if (m < 0) {
        m = ngx_http_llmroute_json_member_text(buf, dl, 1);
        *folded = m;
    }

    /* a name of n bytes is at most 6 n escaped */

    if (m >= 0 && l > 6 * ngx_http_llmroute_members[m].len) {
        *folded = -1;
        return -1;
    }

    return (*folded >= 0) ? -1 : m;
}


#define ngx_http_llmroute_json_is(p, name, fold)                             \
    ((fold) ? ngx_http_llmroute_equal_lc(p, name, sizeof(name) - 1)          \
            : ngx_memcmp(p, name, sizeof(name) - 1) == 0)

/* the indexes are those of ngx_http_llmroute_members[] */

static ngx_int_t
ngx_http_llmroute_json_member_text(u_char *p, size_t l, ngx_uint_t fold)
{
    switch (l) {

    case 5:
        return ngx_http_llmroute_json_is(p, "model", fold) ? 0
               : ngx_http_llmroute_json_is(p, "tools", fold) ? 6 : -1;

    case 6:
        return ngx_http_llmroute_json_is(p, "stream", fold) ? 2
               : ngx_http_llmroute_json_is(p, "system", fold) ? 9 : -1;

    case 8:
        return ngx_http_llmroute_json_is(p, "messages", fold) ? 1
               : ngx_http_llmroute_json_is(p, "metadata", fold) ? 11 : -1;

    case 9:
        return ngx_http_llmroute_json_is(p, "functions", fold) ? 7 : -1;

    case 10:
        return ngx_http_llmroute_json_is(p, "max_tokens", fold) ? 4 : -1;

    case 14:
        return ngx_http_llmroute_json_is(p, "stream_options", fold) ? 3 : -1;

    case 15:
        return ngx_http_llmroute_json_is(p, "response_format", fold) ? 8 : -1;

    case 16:
        return ngx_http_llmroute_json_is(p, "prompt_cache_key", fold) ? 10
                                                                      : -1;

    case 21:
        return ngx_http_llmroute_json_is(p, "max_completion_tokens", fold)
               ? 5 : -1;

    default:
        return -1;
    }
}


static ngx_int_t
ngx_http_llmroute_json_number(ngx_http_llmroute_json_t *js, int i, int64_t *n)
{
    u_char   *p, *last;
    int64_t   v;

    if (js->tok[i].type != JSMN_PRIMITIVE) {
        return NGX_ERROR;
    }

    p = js->body + js->tok[i].start;
    last = js->body + js->tok[i].end;
    v = 0;

    if (p == last) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        if (v < 1000000000000LL) {
            v = v * 10 + (*p - '0');
        }
    }

    *n = v;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llmroute_json_true(ngx_http_llmroute_json_t *js, int i)
{
    return js->tok[i].type == JSMN_PRIMITIVE
           && js->body[js->tok[i].start] == 't';
}


static ngx_int_t
ngx_http_llmroute_json_fail(ngx_http_llmroute_req_t *req, ngx_uint_t error,
    const char *msg, const char *param)
{
    req->error = error;
    req->error_msg = msg;
    req->error_param = param;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_llmroute_json_hex(u_char *p)
{
    ngx_uint_t  i, v;
    u_char      c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        v <<= 4;

        if (c >= '0' && c <= '9') {
            v |= c - '0';

        } else {
            c |= 0x20;
            v |= c - 'a' + 10;
        }
    }

    return v;
}


/*
 * JSON string escapes to UTF-8 (jsmn has validated their syntax);
 * returns the length or -1 when dst is too small or the text is not valid
 */

static ssize_t
ngx_http_llmroute_json_unescape(u_char *src, size_t len, u_char *dst,
    size_t size)
{
    u_char      *p, *last, *d, *dlast;
    ngx_uint_t   cp, lo;

    p = src;
    last = src + len;
    d = dst;
    dlast = dst + size;

    while (p < last) {

        if (*p != '\\') {
            if (d == dlast) {
                return -1;
            }

            *d++ = *p++;
            continue;
        }

        if (p + 1 >= last) {
            return -1;
        }

        p++;

        switch (*p) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (p + 5 > last) {
                return -1;
            }

            cp = ngx_http_llmroute_json_hex(p + 1);
            p += 4;

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p + 7 > last || p[1] != '\\' || p[2] != 'u') {
                    return -1;
                }

                lo = ngx_http_llmroute_json_hex(p + 3);
                if (lo < 0xdc00 || lo > 0xdfff) {
                    return -1;
                }

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;

            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1;
            }

            break;
        default:
            cp = *p;
        }

        p++;

        if (dlast - d < (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4))
        {
            return -1;
        }

        if (cp < 0x80) {
            *d++ = (u_char) cp;

        } else if (cp < 0x800) {
            *d++ = (u_char) (0xc0 | (cp >> 6));
            *d++ = (u_char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *d++ = (u_char) (0xe0 | (cp >> 12));
            *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (cp & 0x3f));

        } else {
            *d++ = (u_char) (0xf0 | (cp >> 18));
            *d++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
            *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (cp & 0x3f));
        }
    }

    return d - dst;
}


ngx_int_t
ngx_http_llmroute_tier_by_name(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_LLMROUTE_NTIERS; i++) {
        if (ngx_http_llmroute_tier_names[i].len == len
            && ngx_strncasecmp(ngx_http_llmroute_tier_names[i].data, name, len)
               == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}
