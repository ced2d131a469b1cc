
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Which message is the ask, and which bytes of it are scaffolding.
 *
 * A coding agent's request is mostly not the user's words: a long system
 * prompt, tool schemas, earlier answers, tool results, and blocks the agent
 * injects into the user's own turn (<system-reminder>, <environment_details>,
 * file listings, IDE context).  The classifier reads the ask only: the
 * latest user message that has text of its own.  A user message made only
 * of tool results (Anthropic "tool_result" blocks) or only of injected
 * blocks is not an ask, so a tool loop finds, statelessly, the ask it
 * serves.  The parsers report spans and roles; everything here works on
 * those raw, still-escaped spans and allocates nothing.
 */


#include <ngx_http_llmroute_core.h>


/* a utility call names its job in the first bytes of its system prompt */
#define NGX_HTTP_LLMROUTE_UTILITY_HEAD  256
#define NGX_HTTP_LLMROUTE_UTILITY_PARTS 3

/* a tag that does not close is text; so many of them stop the search */
#define NGX_HTTP_LLMROUTE_BLOCK_TRIES  16
#define NGX_HTTP_LLMROUTE_TAG_MAX      32


static u_char *ngx_http_llmroute_ask_skip(u_char *p, u_char *last);
static u_char *ngx_http_llmroute_ask_string_end(u_char *p, u_char *last);
static u_char *ngx_http_llmroute_ask_space(u_char *p, u_char *last);
static ngx_uint_t ngx_http_llmroute_ask_tag(u_char *p, u_char *last,
    size_t *len);
static u_char *ngx_http_llmroute_ask_close(u_char *p, u_char *last,
    u_char *name, size_t len);
static ngx_uint_t ngx_http_llmroute_ask_title(u_char *p, u_char *last);
static ngx_uint_t ngx_http_llmroute_ask_word(u_char *p, u_char *last,
    const char *word, ngx_uint_t whole);


/*
 * tags an agent wraps around what it injects; any tag whose name has "_"
 * or "-" counts too, except the ones that wrap the user's own words
 */
static ngx_str_t  ngx_http_llmroute_ask_scaffolding[] = {
    ngx_string("context"),
    ngx_string("environment"),
    ngx_string("env"),
    ngx_string("file"),
    ngx_string("files"),
    ngx_string("attachment"),
    ngx_string("attachments"),
    ngx_string("selection"),
    ngx_string("diagnostics"),
    ngx_string("terminal"),
    ngx_string("rules"),
    ngx_string("memory"),
    ngx_string("reminder"),
    ngx_null_string
};

/* with "title", a system prompt that asks for one (stems, lower case) */
static const char  *ngx_http_llmroute_ask_title_verbs[] = {
    "generat", "summar", "extract", "brief", "short", "concise", NULL
};

static ngx_str_t  ngx_http_llmroute_ask_words[] = {
    ngx_string("user_query"),
    ngx_string("user_request"),
    ngx_string("user_message"),
    ngx_string("user_input"),
    ngx_null_string
};


/*
 * the latest message before "before" that is an ask: role user, with text
 * that is not an injected block; -1 when there is none
 */

ngx_int_t
ngx_http_llmroute_ask_prev(ngx_http_llmroute_req_t *req, ngx_uint_t before)
{
    u_char                   *p, *last, *s, *e;
    ngx_uint_t                i;
    ngx_http_llmroute_msg_t  *m;

    for (i = ngx_min(before, req->nmsgs); i-- > 0; /* void */ ) {
        m = &req->msgs[i];

        if (m->role != NGX_HTTP_LLMROUTE_ROLE_USER || m->end <= m->start) {
            continue;
        }

        p = req->body + m->start;
        last = req->body + m->end;

        if (!ngx_http_llmroute_ask_is_parts(req, m)) {
            if (ngx_http_llmroute_ask_has_text(p, last)) {
                return i;
            }

            continue;
        }

        while ((s = ngx_http_llmroute_ask_part(&p, last, &e)) != NULL) {
            if (ngx_http_llmroute_ask_has_text(s, e)) {
                return i;
            }
        }
    }

    return -1;
}


/*
 * a utility call of an agent, not a task: opencode asks for a title of the
 * conversation in a separate request, with its own system prompt ("You are
 * a title generator ...") and no tools, the user's message embedded in it.
 * Writing a title is simple work however hard the message it names.  Such
 * a request has no tools and no tool calls, and its system prompt, before
 * any user turn, asks for a title in its first bytes
 */

ngx_uint_t
ngx_http_llmroute_ask_utility(ngx_http_llmroute_req_t *req)
{
    u_char                   *p, *last, *s, *e;
    ngx_uint_t                i, n;
    ngx_http_llmroute_msg_t  *m;

    if (req->ntools) {
        return 0;
    }

    for (i = 0; i < req->nmsgs; i++) {
        if (req->msgs[i].tool_calls) {
            return 0;
        }
    }

    for (i = 0; i < req->nmsgs; i++) {
        m = &req->msgs[i];

        if (m->role == NGX_HTTP_LLMROUTE_ROLE_USER) {
            return 0;
        }

        if (m->role != NGX_HTTP_LLMROUTE_ROLE_SYSTEM || m->end <= m->start) {
            continue;
        }

        p = req->body + m->start;
        last = req->body + m->end;

        if (!ngx_http_llmroute_ask_is_parts(req, m)) {
            return ngx_http_llmroute_ask_title(p, last);
        }

        /* Claude Code puts a billing line and an identity line first */

        for (n = 0; n < NGX_HTTP_LLMROUTE_UTILITY_PARTS; n++) {
            s = ngx_http_llmroute_ask_part(&p, last, &e);

            if (s == NULL) {
                return 0;
            }

            if (ngx_http_llmroute_ask_title(s, e)) {
                return 1;
            }
        }

        return 0;
    }

    return 0;
}


/* "title" and a verb that asks for one, in the first bytes of a text */

static ngx_uint_t
ngx_http_llmroute_ask_title(u_char *p, u_char *last)
{
    ngx_uint_t  i;

    last = ngx_min(last, p + NGX_HTTP_LLMROUTE_UTILITY_HEAD);

    if (!ngx_http_llmroute_ask_word(p, last, "title", 1)) {
        return 0;
    }

    for (i = 0; ngx_http_llmroute_ask_title_verbs[i]; i++) {
        if (ngx_http_llmroute_ask_word(p, last,
                                       ngx_http_llmroute_ask_title_verbs[i],
                                       0))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * a word at the start of a word, any case; whole: not followed by a letter
 * but a plural "s" ("title", "titles", not "titled" or "subtitle")
 */

static ngx_uint_t
ngx_http_llmroute_ask_word(u_char *p, u_char *last, const char *word,
    ngx_uint_t whole)
{
    u_char  *q, *e;
    size_t   len;

    len = ngx_strlen(word);

    for (q = p; (size_t) (last - q) >= len; q++) {
        /* a letter before it, not the "n" of an escaped "\n" */

        if (q > p && ((q[-1] | 0x20) >= 'a' && (q[-1] | 0x20) <= 'z')
            && !(q - p >= 2 && q[-2] == '\\'))
        {
            continue;
        }

        if (ngx_strncasecmp(q, (u_char *) word, len) != 0) {
            continue;
        }

        if (!whole) {
            return 1;
        }

        e = q + len;
        e += (e < last && (*e | 0x20) == 's');

        if (e == last || !((*e | 0x20) >= 'a' && (*e | 0x20) <= 'z')) {
            return 1;
        }
    }

    return 0;
}


/*
 * an array of content parts, not a string that starts with "[": a string's
 * span starts after its opening quote
 */

ngx_uint_t
ngx_http_llmroute_ask_is_parts(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_msg_t *m)
{
    return m->end > m->start && req->body[m->start] == '['
           && (m->start == 0 || req->body[m->start - 1] != '"');
}


/* text of the user's own: something outside injected blocks */

ngx_uint_t
ngx_http_llmroute_ask_has_text(u_char *p, u_char *last)
{
    u_char  *b, *e;

    for ( ;; ) {
        p = ngx_http_llmroute_ask_space(p, last);

        if (p == last) {
            return 0;
        }

        /* a block starts with its "<": any other byte is text, no search */

        if (*p != '<') {
            return 1;
        }

        b = ngx_http_llmroute_ask_block(p, last, &e);

        if (b != p) {
            return 1;
        }

        p = e;
    }
}


/*
 * the next text value of an array of content parts, from *pp on: parts of
 * type "text" or "input_text" (or with a "text" and no type); tool_use,
 * tool_result, images and the like are skipped whole, never read
 */

u_char *
ngx_http_llmroute_ask_part(u_char **pp, u_char *last, u_char **e)
{
    u_char      *p, *k, *ke, *te, *text, *text_end;
    ngx_uint_t   typed, is_text;

    p = *pp;

    if (p < last && *p == '[') {
        p++;
    }

    for ( ;; ) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n' || *p == ','))
        {
            p++;
        }

        if (p >= last || *p == ']') {
            *pp = last;
            return NULL;
        }

        if (*p != '{') {
            k = p;
            p = ngx_http_llmroute_ask_skip(p, last);
            p += (p == k);  /* a stray "}": skip it, never stand still */
            continue;
        }

        p++;
        typed = 0;
        is_text = 0;
        text = NULL;
        text_end = NULL;

        /* members of one part: "key": value, ... } */

        for ( ;; ) {
            while (p < last && *p != '"' && *p != '}') {
                p++;
            }

            if (p >= last) {
                *pp = last;
                return NULL;
            }

            if (*p == '}') {
                p++;
                break;
            }

            k = p + 1;
            ke = ngx_http_llmroute_ask_string_end(k, last);
            p = ke + 1;

            while (p < last && *p != ':') {
                p++;
            }

            p = ngx_http_llmroute_ask_space(p + (p < last), last);

            if (p < last && *p == '"') {
                if (ke - k == 4 && ngx_memcmp(k, "type", 4) == 0) {
                    typed = 1;
                    te = ngx_http_llmroute_ask_string_end(p + 1, last);
                    is_text = (te - p - 1 == 4
                               && ngx_memcmp(p + 1, "text", 4) == 0)
                              || (te - p - 1 == 10
                                  && ngx_memcmp(p + 1, "input_text", 10)
                                     == 0);

                } else if (ke - k == 4 && ngx_memcmp(k, "text", 4) == 0) {
                    text = p + 1;
                    text_end = ngx_http_llmroute_ask_string_end(text, last);
                }
            }

            p = ngx_http_llmroute_ask_skip(p, last);
        }

        if (text && (is_text || !typed)) {
            *pp = p;
            *e = text_end;
            return text;
        }
    }
}


/*
 * the next injected block in a text from p on, at the start of a line:
 * "<system-reminder>...</system-reminder>"; returns its start and sets
 * *end past its closing tag, or returns last when there is none
 */

u_char *
ngx_http_llmroute_ask_block(u_char *p, u_char *last, u_char **end)
{
    u_char      *start, *q, *c;
    size_t       len;
    ngx_uint_t   tries;

    start = p;
    *end = last;

    for (tries = 0; tries < NGX_HTTP_LLMROUTE_BLOCK_TRIES; /* void */ ) {
        q = memchr(p, '<', last - p);

        if (q == NULL) {
            return last;
        }

        p = q + 1;

        /* at the start of the text or of a line (raw "\n"), spaces aside */

        for (c = q; c > start && c[-1] == ' '; c--) {
            /* void */
        }

        if (c != start
            && !(c - start >= 2 && c[-2] == '\\'
                 && (c[-1] == 'n' || c[-1] == 'r')))
        {
            continue;
        }

        if (!ngx_http_llmroute_ask_tag(q + 1, last, &len)) {
            continue;
        }

        tries++;

        c = ngx_http_llmroute_ask_close(q + 1 + len, last, q + 1, len);

        if (c != NULL) {
            *end = c;
            return q;
        }
    }

    return last;
}


/* a scaffolding tag name at p: "system-reminder>", "file path=..." */

static ngx_uint_t
ngx_http_llmroute_ask_tag(u_char *p, u_char *last, size_t *len)
{
    u_char      *q;
    ngx_uint_t   i, joined;

    joined = 0;

    for (q = p; q < last && q - p <= NGX_HTTP_LLMROUTE_TAG_MAX; q++) {
        if ((*q >= 'a' && *q <= 'z') || (q > p && *q >= '0' && *q <= '9')) {
            continue;
        }

        if (q > p && (*q == '_' || *q == '-')) {
            joined = 1;
            continue;
        }

        break;
    }

    if (q - p < 3 || q == last || (*q != '>' && *q != ' ')) {
        return 0;
    }

    *len = q - p;

    for (i = 0; ngx_http_llmroute_ask_words[i].len; i++) {
        if (ngx_http_llmroute_ask_words[i].len == *len
            && ngx_memcmp(ngx_http_llmroute_ask_words[i].data, p, *len) == 0)
        {
            return 0;
        }
    }

    if (joined) {
        return 1;
    }

    for (i = 0; ngx_http_llmroute_ask_scaffolding[i].len; i++) {
        if (ngx_http_llmroute_ask_scaffolding[i].len == *len
            && ngx_memcmp(ngx_http_llmroute_ask_scaffolding[i].data, p, *len)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* past "</name>" from p on, or NULL */

static u_char *
ngx_http_llmroute_ask_close(u_char *p, u_char *last, u_char *name,
    size_t len)
{
    u_char  *q;

    while (p < last) {
        q = memchr(p, '<', last - p);

        if (q == NULL) {
            return NULL;
        }

        if ((size_t) (last - q) >= len + 3 && q[1] == '/'
            && ngx_memcmp(q + 2, name, len) == 0 && q[len + 2] == '>')
        {
            return q + len + 3;
        }

        p = q + 1;
    }

    return NULL;
}


/* spaces and escaped line breaks and tabs */

static u_char *
ngx_http_llmroute_ask_space(u_char *p, u_char *last)
{
    while (p < last) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;

        } else if (*p == '\\' && last - p >= 2
                   && (p[1] == 'n' || p[1] == 'r' || p[1] == 't'))
        {
            p += 2;

        } else {
            break;
        }
    }

    return p;
}


/* the closing quote of a string whose first byte is p, or last */

static u_char *
ngx_http_llmroute_ask_string_end(u_char *p, u_char *last)
{
    u_char  *q, *b;

    for ( ;; ) {
        q = memchr(p, '"', last - p);

        if (q == NULL) {
            return last;
        }

        for (b = q; b > p && b[-1] == '\\'; b--) {
            /* void */
        }

        if (((q - b) & 1) == 0) {
            return q;
        }

        p = q + 1;
    }
}


/* past one JSON value at p (already validated by the parser) */

static u_char *
ngx_http_llmroute_ask_skip(u_char *p, u_char *last)
{
    ngx_uint_t  depth;

    depth = 0;

    while (p < last) {
        switch (*p) {

        case '"':
            p = ngx_http_llmroute_ask_string_end(p + 1, last);
            p += (p < last);

            if (depth == 0) {
                return p;
            }

            continue;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (depth == 0) {
                return p;   /* the end of the enclosing value */
            }

            if (--depth == 0) {
                return p + 1;
            }

            break;

        case ',':
            if (depth == 0) {
                return p;
            }

            break;
        }

        p++;
    }

    return last;
}
