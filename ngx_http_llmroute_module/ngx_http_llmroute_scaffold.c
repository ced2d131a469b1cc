
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Agents' scaffolds and the models that cache them.  Every session of an
 * agent starts its prompt with the same tools and (most of) the same
 * system prompt; a provider caches that prefix for all of them, so once
 * any session of the agent went to a model, another session moving there
 * re-reads only what it does not share.  What two prompts share is their
 * longest common prefix: the scaffold is hashed at levels (the tools, then
 * the tools and the system prompt's first 1, 2, 4 and 8 KB, then all of its
 * leading system messages), so an agent whose system prompt ends with the
 * session's own directory or date still shares the levels before that.
 *
 * This file owns the zone's table of scaffolds: per model and agent (its
 * tools), the levels last sent there and when; the oldest slot is reused.
 * It is allocated when the first scaffold a provider caches is sent (a
 * zone that serves no agent spends nothing on it) and lives as long as the
 * zone.  Callers hold the zone mutex.
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_http_llmroute_memo.h>


/* providers cache prompts from this many tokens up */
#define NGX_HTTP_LLMROUTE_SCAFFOLD_MIN     1024

/* the first checkpoint in a system text; the next ones double it */
#define NGX_HTTP_LLMROUTE_SCAFFOLD_STEP    1024

/* bytes hashed at each end of a part, and before each checkpoint */
#define NGX_HTTP_LLMROUTE_SCAFFOLD_SAMPLE  256


/*
 * Where the scaffold's pieces go: mixed into the hash chain (and its
 * levels into sc), or collected as the memo's key (a level as a marked
 * piece of its byte count; lengths and counts kept until the key is done).
 */

typedef struct {
    ngx_http_llmroute_scaffold_t   *sc;
    uint32_t                        h;
    ngx_http_llmroute_memo_key_t   *key;
} ngx_http_llmroute_scaffold_sink_t;


static void ngx_http_llmroute_scaffold_ops(ngx_http_llmroute_req_t *req,
    size_t tools, size_t bytes, ngx_http_llmroute_scaffold_sink_t *sink);
static void ngx_http_llmroute_scaffold_part(
    ngx_http_llmroute_scaffold_sink_t *sink, u_char *p, size_t len);
static void ngx_http_llmroute_scaffold_mix(
    ngx_http_llmroute_scaffold_sink_t *sink, u_char *p, size_t len);
static void ngx_http_llmroute_scaffold_level(
    ngx_http_llmroute_scaffold_sink_t *sink, size_t bytes);


/* the worker's levels of scaffolds it has hashed */
static ngx_http_llmroute_memo_t  ngx_http_llmroute_scaffold_memo;


/*
 * The request's scaffold levels.  Each level's hash chains the previous
 * one with a sample of what it adds (a part's length and first and last
 * 256 bytes; the 256 bytes before each checkpoint of the system text):
 * two prompts alike there share the level.  That costs a routing estimate
 * when wrong, never an answer; hashing all of a 30 KB scaffold would cost
 * a quarter of the request's instructions.  An agent sends the same
 * scaffold every turn: the same samples give the levels computed before.
 */

void
ngx_http_llmroute_scaffold_of(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_scaffold_t *sc)
{
    u_char                             *p;
    size_t                              tools, bytes;
    ngx_uint_t                          i;
    ngx_http_llmroute_msg_t            *msg;
    ngx_http_llmroute_memo_key_t        key;
    ngx_http_llmroute_scaffold_sink_t   sink;

    ngx_memzero(sc, sizeof(ngx_http_llmroute_scaffold_t));

    tools = req->tools_end - req->tools_start;

    /* the deepest level's bytes: all the leading system messages */

    bytes = tools;

    for (i = 0; i < req->nmsgs; i++) {
        msg = &req->msgs[i];

        if (msg->role != NGX_HTTP_LLMROUTE_ROLE_SYSTEM) {
            break;
        }

        bytes += msg->end - msg->start + 4 * 4;  /* as the prompt estimate */
    }

    /*
     * too short for a provider to cache even whole: no level is ever
     * remembered or counted (held and seen skip it), none is hashed
     */

    if (bytes / 4 < NGX_HTTP_LLMROUTE_SCAFFOLD_MIN) {
        return;
    }

    sink.sc = NULL;
    sink.key = &key;
    ngx_http_llmroute_memo_start(&key);

    ngx_http_llmroute_scaffold_ops(req, tools, bytes, &sink);

    p = ngx_http_llmroute_memo_find(&ngx_http_llmroute_scaffold_memo, &key);

    if (p) {
        ngx_memcpy(sc, p, sizeof(ngx_http_llmroute_scaffold_t));
        return;
    }

    sink.sc = sc;
    sink.h = 0;
    sink.key = NULL;

    ngx_http_llmroute_scaffold_ops(req, tools, bytes, &sink);

    ngx_http_llmroute_memo_keep(&ngx_http_llmroute_scaffold_memo, &key, sc,
                                sizeof(ngx_http_llmroute_scaffold_t));
}


static void
ngx_http_llmroute_scaffold_ops(ngx_http_llmroute_req_t *req, size_t tools,
    size_t bytes, ngx_http_llmroute_scaffold_sink_t *sink)
{
    u_char                   *sys;
    size_t                    len, at;
    ngx_uint_t                i, nlevels;
    ngx_http_llmroute_msg_t  *msg;

    ngx_http_llmroute_scaffold_part(sink, req->body + req->tools_start,
                                    tools);
    ngx_http_llmroute_scaffold_level(sink, tools);

    if (req->nmsgs == 0 || req->msgs[0].role != NGX_HTTP_LLMROUTE_ROLE_SYSTEM)
    {
        return;
    }

    /* checkpoints in the first system message: 1, 2, 4, 8 KB */

    sys = req->body + req->msgs[0].start;
    len = req->msgs[0].end - req->msgs[0].start;
    nlevels = 1;

    for (at = NGX_HTTP_LLMROUTE_SCAFFOLD_STEP;
         at < len && nlevels < NGX_HTTP_LLMROUTE_SCAFFOLD_LEVELS - 1;
         at *= 2)
    {
        ngx_http_llmroute_scaffold_mix(sink,
                                 sys + at - NGX_HTTP_LLMROUTE_SCAFFOLD_SAMPLE,
                                 NGX_HTTP_LLMROUTE_SCAFFOLD_SAMPLE);
        ngx_http_llmroute_scaffold_level(sink, tools + at);
        nlevels++;
    }

    /* then all the system messages before the first other one */

    for (i = 0; i < req->nmsgs; i++) {
        msg = &req->msgs[i];

        if (msg->role != NGX_HTTP_LLMROUTE_ROLE_SYSTEM) {
            break;
        }

        ngx_http_llmroute_scaffold_part(sink, req->body + msg->start,
                                        msg->end - msg->start);
    }

    ngx_http_llmroute_scaffold_level(sink, bytes);
}


/* a part's length, its first sample and the rest of its last one */

static void
ngx_http_llmroute_scaffold_part(ngx_http_llmroute_scaffold_sink_t *sink,
    u_char *p, size_t len)
{
    size_t  head, tail;

    head = ngx_min(len, NGX_HTTP_LLMROUTE_SCAFFOLD_SAMPLE);
    tail = ngx_min(len - head, NGX_HTTP_LLMROUTE_SCAFFOLD_SAMPLE);

    if (sink->key) {
        ngx_http_llmroute_memo_add_word(sink->key, len, 0);

    } else {
        ngx_http_llmroute_scaffold_mix(sink, (u_char *) &len, sizeof(size_t));
    }

    ngx_http_llmroute_scaffold_mix(sink, p, head);
    ngx_http_llmroute_scaffold_mix(sink, p + len - tail, tail);
}


/* murmur2 of the bytes, chained (FNV-1a's step) */

static void
ngx_http_llmroute_scaffold_mix(ngx_http_llmroute_scaffold_sink_t *sink,
    u_char *p, size_t len)
{
    if (sink->key) {
        ngx_http_llmroute_memo_add(sink->key, p, len, 0);
        return;
    }

    sink->h = (sink->h ^ ngx_murmur_hash2(p, len)) * 16777619;
}


static void
ngx_http_llmroute_scaffold_level(ngx_http_llmroute_scaffold_sink_t *sink,
    size_t bytes)
{
    ngx_http_llmroute_scaffold_t  *sc;

    if (sink->key) {
        ngx_http_llmroute_memo_add_word(sink->key, bytes, 1);
        return;
    }

    sc = sink->sc;

    sc->level[sc->nlevels] = sink->h ? sink->h : 1;
    sc->tokens[sc->nlevels] = bytes / 4;
    sc->nlevels++;
}


/*
 * The models that cache the request's scaffold, and how many of its
 * tokens (the deepest level they share): at most max, into holder[],
 * tokens[] and last[].
 */

ngx_uint_t
ngx_http_llmroute_scaffold_held_locked(ngx_http_llmroute_shctx_t *sh,
    ngx_http_llmroute_scaffold_t *sc, uint32_t *holder, uint64_t *tokens,
    uint64_t *last, ngx_uint_t max)
{
    ngx_uint_t                     i, k, n;
    ngx_http_llmroute_scaffold_t  *s;

    n = 0;

    for (i = 0; sh->scaffolds && i < NGX_HTTP_LLMROUTE_SCAFFOLDS && n < max;
         i++)
    {
        s = &sh->scaffolds[i];

        if (s->holder == 0 || s->nlevels == 0 || s->level[0] != sc->level[0])
        {
            continue;
        }

        for (k = 1;
             k < ngx_min(s->nlevels, sc->nlevels)
             && s->level[k] == sc->level[k];
             k++)
        {
            /* void */
        }

        holder[n] = s->holder;
        tokens[n] = sc->tokens[k - 1];
        last[n] = s->last;
        n++;
    }

    return n;
}


/* the request's scaffold was sent to a model: its slot, else the oldest */

void
ngx_http_llmroute_scaffold_seen_locked(ngx_http_llmroute_main_conf_t *lmcf,
    uint32_t holder, ngx_http_llmroute_scaffold_t *sc, uint64_t now)
{
    ngx_uint_t                     i;
    ngx_http_llmroute_shctx_t     *sh;
    ngx_http_llmroute_scaffold_t  *s, *slot;

    /* too short for a provider to cache: nothing to remember */

    if (sc->nlevels == 0
        || sc->tokens[sc->nlevels - 1] < NGX_HTTP_LLMROUTE_SCAFFOLD_MIN)
    {
        return;
    }

    sh = lmcf->sh;

    if (sh->scaffolds == NULL) {
        sh->scaffolds = ngx_slab_calloc_locked(lmcf->shpool,
                                NGX_HTTP_LLMROUTE_SCAFFOLDS
                                * sizeof(ngx_http_llmroute_scaffold_t));
        if (sh->scaffolds == NULL) {
            return;             /* a full zone: moves priced without them */
        }
    }

    slot = &sh->scaffolds[0];

    for (i = 0; i < NGX_HTTP_LLMROUTE_SCAFFOLDS; i++) {
        s = &sh->scaffolds[i];

        if (s->holder == holder && s->nlevels && s->level[0] == sc->level[0])
        {
            slot = s;
            break;
        }

        if (s->last < slot->last) {
            slot = s;
        }
    }

    *slot = *sc;
    slot->holder = holder;
    slot->last = now;
}
