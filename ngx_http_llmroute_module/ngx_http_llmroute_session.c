
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Agent sessions and their prompt cache.  A session is keyed by a keyed
 * hash of what the client says it is (header, metadata.user_id,
 * prompt_cache_key) or of its prefix (system + tools + first user
 * message); its zone entry remembers the provider and model holding the
 * session's prompt cache, how many prompt tokens it holds, and the tier.
 * Selection then prices the cached prefix at cached_input on that model
 * only, so a session stays where its cache is unless moving pays.
 *
 * This file owns the entries: it allocates them, pins them while a request
 * uses them (count), expires idle ones and evicts the least recently used
 * unpinned ones when the zone is full, as limit_req does.  A request keeps
 * its pinned entry only until its log phase (or its pool's cleanup).
 */


#include <ngx_http_llmroute_module.h>
#include <ngx_md5.h>
#include <ngx_http_llmroute_siphash.h>
#include <ngx_http_llmroute_memo.h>


/* bytes hashed at each end of a prefix part */
#define NGX_HTTP_LLMROUTE_SESSION_SAMPLE  1024


/* an entry idle this long goes (ms); a cache is long gone by then */
#define NGX_HTTP_LLMROUTE_SESSION_IDLE   3600000

/* providers cache prompts from this many tokens up (OpenAI, Anthropic) */
#define NGX_HTTP_LLMROUTE_CACHE_MIN      1024

/* a choice is ranked over this many turns to come, at least, at most */
#define NGX_HTTP_LLMROUTE_HORIZON_MIN    16
#define NGX_HTTP_LLMROUTE_HORIZON        32


typedef struct {
    ngx_rbtree_node_t                node;       /* key: first 4 bytes */
    ngx_queue_t                      queue;      /* LRU */
    u_char                           key[NGX_HTTP_LLMROUTE_SESSION_LEN];
    ngx_uint_t                       count;      /* requests using it */
    uint32_t                         holder;     /* crc32 provider/model */
    ngx_uint_t                       tier;
    uint64_t                         last;       /* ms since the epoch */
    uint64_t                         cached;     /* prompt tokens cached */
    ngx_uint_t                       turns;      /* answered */

    /* the holder before a move: its cache lives on until its TTL */
    uint32_t                         prev;
    uint64_t                         prev_cached;
    uint64_t                         prev_last;

    /* the answers' tokens: what a turn to come is expected to cost */
    uint64_t                         out;
    ngx_uint_t                       answers;

    ngx_uint_t                       dirty;      /* not pushed to Redis */
} ngx_http_llmroute_session_node_t;


/*
 * Where the pieces of a session's prefix go: into the hash, or into the
 * memo's key (with the length words they need kept until it is done).
 */

typedef struct {
    ngx_http_llmroute_siphash_t     *sh;
    ngx_http_llmroute_memo_key_t    *key;
} ngx_http_llmroute_session_sink_t;


/* the fields a node pushes to Redis, in order; older nodes push the first 5 */
#define NGX_HTTP_LLMROUTE_SESSION_FIELDS  10


static ngx_int_t ngx_http_llmroute_session_key(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_http_llmroute_loc_conf_t *lcf);
static void ngx_http_llmroute_session_user_id(ngx_str_t *v);
static u_char *ngx_http_llmroute_session_salt(
    ngx_http_llmroute_main_conf_t *lmcf);
static ngx_int_t ngx_http_llmroute_session_prefix(
    ngx_http_llmroute_req_t *req, ngx_http_llmroute_session_sink_t *sink);
static ngx_inline void ngx_http_llmroute_session_feed(
    ngx_http_llmroute_session_sink_t *sink, u_char *data, size_t len);
static ngx_inline void ngx_http_llmroute_session_hash_part(
    ngx_http_llmroute_session_sink_t *sink, u_char *p, size_t len);
static ngx_http_llmroute_session_node_t *ngx_http_llmroute_session_lookup(
    ngx_http_llmroute_main_conf_t *lmcf, u_char *key, uint64_t now);
static ngx_http_llmroute_session_node_t *ngx_http_llmroute_session_find(
    ngx_http_llmroute_shctx_t *sh, u_char *key);
static ngx_int_t ngx_http_llmroute_session_unhex(ngx_str_t *hex, u_char *key);
static void ngx_http_llmroute_session_dirty(ngx_http_llmroute_shctx_t *sh,
    ngx_http_llmroute_session_node_t *sn);
static void ngx_http_llmroute_session_free(
    ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_session_node_t *sn);
static void ngx_http_llmroute_session_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_llmroute_session_moved(
    ngx_http_llmroute_main_conf_t *lmcf, ngx_http_llmroute_ctx_t *ctx,
    uint64_t cooling);
static void ngx_http_llmroute_session_holds(ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t model, uint64_t tokens);
static ngx_int_t ngx_http_llmroute_session_model(
    ngx_http_llmroute_main_conf_t *lmcf, uint32_t holder);
static uint32_t ngx_http_llmroute_session_holder(
    ngx_http_llmroute_model_t *m);
static uint64_t ngx_http_llmroute_session_now(void);


/* the worker's session keys of prefixes it has hashed */
static ngx_http_llmroute_memo_t  ngx_http_llmroute_session_memo;


const char  *ngx_http_llmroute_move_names[] = {
    "tier_up", "ineligible", "cooldown", "limit", "cheaper", "expired",
    "evicted", NULL
};


/* llmroute_session VALUE | off; */

char *
ngx_http_llmroute_session(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_loc_conf_t *lcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (lcf->session != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        lcf->session = NULL;
        lcf->session_off = 1;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty session key, expected a value or \"off\"");
        return NGX_CONF_ERROR;
    }

    lcf->session = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (lcf->session == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = lcf->session;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    lcf->session_off = 0;

    return NGX_CONF_OK;
}


void
ngx_http_llmroute_session_init_zone(ngx_http_llmroute_shctx_t *sh)
{
    ngx_rbtree_init(&sh->sessions, &sh->session_sentinel,
                    ngx_http_llmroute_session_insert_value);
    ngx_queue_init(&sh->session_lru);
}


/*
 * At the decision: the session's key, its entry (created when new, then
 * pinned), and what selection needs of it: the holder while its cache
 * lives, the tokens it holds, the tier of the session's last turn.
 */

ngx_int_t
ngx_http_llmroute_session_begin(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    uint64_t                           now;
    ngx_int_t                          rc, model;
    ngx_uint_t                         i, nheld;
    ngx_http_llmroute_loc_conf_t      *lcf;
    ngx_http_llmroute_main_conf_t     *lmcf;
    ngx_http_llmroute_session_node_t  *sn;
    ngx_http_llmroute_session_node_t   snap;
    uint32_t                           held[NGX_HTTP_LLMROUTE_SCAFFOLDS];
    uint64_t                           held_tokens[NGX_HTTP_LLMROUTE_SCAFFOLDS];
    uint64_t                           held_last[NGX_HTTP_LLMROUTE_SCAFFOLDS];

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_llmroute_module);

    ctx->session_holder = -1;
    ctx->want.sticky = 0;
    ctx->want.cached = NULL;
    ctx->want.horizon = 0;
    ctx->want.output = 0;

    /* counting tokens caches nothing: no session turn */

    if (lcf->session_off || lmcf->sh == NULL || ctx->has_session
        || ctx->count_tokens)
    {
        return NGX_OK;
    }

    rc = ngx_http_llmroute_session_key(r, ctx, lcf);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    ctx->has_session = 1;
    ctx->want.session = 1;

    /* a small catalog's counts in the ctx (zeroed with it), not the pool */

    if (lmcf->cat.nmodels <= NGX_HTTP_LLMROUTE_CACHED_INLINE) {
        ctx->want.cached = ctx->cached;

    } else {
        ctx->want.cached = ngx_pcalloc(r->pool,
                                       lmcf->cat.nmodels * sizeof(size_t));
        if (ctx->want.cached == NULL) {
            return NGX_ERROR;
        }
    }

    now = ngx_http_llmroute_session_now();

    ngx_http_llmroute_scaffold_of(&ctx->req, &ctx->scaffold);

    nheld = 0;
    ngx_memzero(&snap, sizeof(ngx_http_llmroute_session_node_t));

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    sn = ngx_http_llmroute_session_lookup(lmcf, ctx->session, now);

    if (sn) {
        sn->count++;
        snap = *sn;

        if (snap.holder) {
            nheld = ngx_http_llmroute_scaffold_held_locked(lmcf->sh,
                        &ctx->scaffold, held, held_tokens, held_last,
                        NGX_HTTP_LLMROUTE_SCAFFOLDS);
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    /* unpinned by ngx_http_llmroute_session_unpin() when the pool goes */

    if (sn == NULL) {
        return NGX_OK;
    }

    ctx->session_node = sn;

    if (snap.holder == 0) {
        return NGX_OK;
    }

    ctx->session_seen = 1;
    ctx->session_tier = snap.tier;

    /*
     * the models that cache the agent's scaffold (another session of the
     * same agent was there): a move re-reads only the session's own part.
     * A new session does not count it: it goes to the cheapest, and the
     * scaffold is cached there for all the sessions after it.
     */

    for (i = 0; i < nheld; i++) {
        model = ngx_http_llmroute_session_model(lmcf, held[i]);

        if (model >= 0
            && held_last[i] + lmcf->cat.models[model].cache_ttl >= now)
        {
            ngx_http_llmroute_session_holds(ctx, model, held_tokens[i]);
        }
    }

    /*
     * this turn and as many to come as the session has had (a session
     * that went on for n turns is as likely as not to go on for n more),
     * but at least 16: a coding agent's task runs for tens of turns (10 to
     * 60 and more), so a young session has most of them ahead, and its own
     * history, all a move re-reads besides the agent's scaffold, is still
     * short: an estimate too long costs little then, one too short keeps
     * it on a dearer provider for the rest of its task
     */

    ctx->want.horizon = 1 + ngx_min(ngx_max(snap.turns,
                                            NGX_HTTP_LLMROUTE_HORIZON_MIN),
                                    NGX_HTTP_LLMROUTE_HORIZON);

    /* what its turns answered so far, on average */

    if (snap.answers) {
        ctx->want.output = ngx_max(snap.out / snap.answers, 1);
    }

    model = ngx_http_llmroute_session_model(lmcf, snap.holder);

    /* gone from the catalog, or a prompt too short for providers to cache */

    if (model < 0 || snap.cached < NGX_HTTP_LLMROUTE_CACHE_MIN) {
        return NGX_OK;
    }

    ctx->session_holder = model;

    /* sums, not differences: a node's clock may be ahead of ours */

    if (snap.last + lmcf->cat.models[model].cache_ttl < now) {
        ctx->session_expired = 1;

    } else {
        ctx->want.sticky = model + 1;
        ngx_http_llmroute_session_holds(ctx, model, snap.cached);
    }

    model = snap.prev ? ngx_http_llmroute_session_model(lmcf, snap.prev)
                      : -1;

    if (model >= 0
        && snap.prev_last + lmcf->cat.models[model].cache_ttl >= now)
    {
        ngx_http_llmroute_session_holds(ctx, model, snap.prev_cached);
    }

    return NGX_OK;
}


/*
 * Admission chose (zone mutex held): the chosen provider and model hold
 * the session's prompt from now on (a provider writes its cache as it
 * reads the prompt, and the next turn may come before this one's log
 * phase).
 */

void
ngx_http_llmroute_session_admitted(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_ctx_t *ctx, uint64_t cooling)
{
    uint32_t                           holder;
    ngx_http_llmroute_model_t         *m;
    ngx_http_llmroute_session_node_t  *sn;

    sn = ctx->session_node;

    if (sn == NULL) {
        return;
    }

    ngx_http_llmroute_session_moved(lmcf, ctx, cooling);

    m = &lmcf->cat.models[ctx->choice.model];
    holder = ngx_http_llmroute_session_holder(m);

    if (sn->holder && sn->holder != holder) {
        sn->prev = sn->holder;
        sn->prev_cached = sn->cached;
        sn->prev_last = sn->last;
    }

    sn->holder = holder;
    sn->tier = ctx->tier;
    sn->cached = ctx->req.prompt_tokens;
    sn->last = ngx_http_llmroute_session_now();

    if (ctx->attempts == 0) {
        sn->turns++;
    }

    ngx_http_llmroute_session_dirty(lmcf->sh, sn);

    ngx_http_llmroute_scaffold_seen_locked(lmcf, holder, &ctx->scaffold,
                                           sn->last);
}


static void
ngx_http_llmroute_session_dirty(ngx_http_llmroute_shctx_t *sh,
    ngx_http_llmroute_session_node_t *sn)
{
    if (!sn->dirty) {
        sn->dirty = 1;
        sh->session_dirty++;
    }
}


/*
 * When the first attempt leaves the holder, count why.  The holder's
 * filter stage tells which check it failed; one that passed them all lost
 * on cost.
 */

static void
ngx_http_llmroute_session_moved(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_ctx_t *ctx, uint64_t cooling)
{
    ngx_uint_t                  move;
    ngx_http_llmroute_model_t  *h;

    if (ctx->session_holder < 0 || ctx->attempts
        || ctx->choice.model == ctx->session_holder)
    {
        return;
    }

    h = &lmcf->cat.models[ctx->session_holder];

    if (ctx->session_expired) {
        move = NGX_HTTP_LLMROUTE_MOVE_EXPIRED;

    } else {
        switch (ctx->choice.sticky_stage) {

        case ngx_http_llmroute_stage_tier:
            move = (ctx->want.tier > h->tier)
                   ? NGX_HTTP_LLMROUTE_MOVE_TIER_UP
                   : NGX_HTTP_LLMROUTE_MOVE_INELIGIBLE;
            break;

        case ngx_http_llmroute_stage_available:
            move = (cooling & ((uint64_t) 1 << h->provider))
                   ? NGX_HTTP_LLMROUTE_MOVE_COOLDOWN
                   : NGX_HTTP_LLMROUTE_MOVE_LIMIT;
            break;

        case ngx_http_llmroute_stage_ok:
            move = NGX_HTTP_LLMROUTE_MOVE_CHEAPER;
            break;

        default:
            move = NGX_HTTP_LLMROUTE_MOVE_INELIGIBLE;
        }
    }

    (void) ngx_atomic_fetch_add(&lmcf->sh->moves[move], 1);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "llmroute: session leaves %V for %V (%s)", &h->full,
                   &lmcf->cat.models[ctx->choice.model].full,
                   ngx_http_llmroute_move_names[move]);
}


/*
 * The request is over: its entry is unpinned, and a provider's answer
 * counts toward the session's expected answer size.  A decided request is
 * settled by ngx_http_llmroute_settle(), under the mutex it holds anyway.
 */

void
ngx_http_llmroute_session_settle(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_main_conf_t  *lmcf;

    if (ctx->session_node == NULL) {
        return;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    ngx_http_llmroute_session_settle_locked(lmcf, ctx);
    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


void
ngx_http_llmroute_session_settle_locked(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_session_node_t  *sn;

    sn = ctx->session_node;

    sn->count--;

    if (ctx->have_usage && ctx->completion_tokens > 0) {
        sn->out += (uint64_t) ctx->completion_tokens;
        sn->answers++;
        ngx_http_llmroute_session_dirty(lmcf->sh, sn);
    }

    ctx->session_node = NULL;
}


/*
 * For the Redis sync (one worker per node): the sessions answered here
 * since the last push, as hex key and "holder tier cached last turns prev
 * prev_cached prev_last out answers" pairs allocated from the batch's
 * pool; at most max of them.  They count as pushed from now on: a push
 * that fails gives them back (ngx_http_llmroute_session_unpushed()).
 */

ngx_uint_t
ngx_http_llmroute_session_changed(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_pool_t *pool, ngx_str_t *out, ngx_uint_t max)
{
    u_char                            *p;
    ngx_uint_t                         n;
    ngx_queue_t                       *q;
    ngx_http_llmroute_shctx_t         *sh;
    ngx_http_llmroute_session_node_t  *sn;

    sh = lmcf->sh;
    n = 0;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    /* changed entries were just used: they are near the LRU head */

    for (q = ngx_queue_head(&sh->session_lru);
         q != ngx_queue_sentinel(&sh->session_lru)
         && sh->session_dirty && n < max;
         q = ngx_queue_next(q))
    {
        sn = ngx_queue_data(q, ngx_http_llmroute_session_node_t, queue);

        if (!sn->dirty) {
            continue;
        }

        p = ngx_pnalloc(pool, 2 * NGX_HTTP_LLMROUTE_SESSION_LEN
                              + NGX_HTTP_LLMROUTE_SESSION_FIELDS
                                * (NGX_INT64_LEN + 1));
        if (p == NULL) {
            break;
        }

        out[2 * n].data = p;
        p = ngx_hex_dump(p, sn->key, NGX_HTTP_LLMROUTE_SESSION_LEN);
        out[2 * n].len = p - out[2 * n].data;

        out[2 * n + 1].data = p;
        p = ngx_sprintf(p, "%uD %ui %uL %uL %ui %uD %uL %uL %uL %ui",
                        sn->holder, sn->tier, sn->cached, sn->last, sn->turns,
                        sn->prev, sn->prev_cached, sn->prev_last, sn->out,
                        sn->answers);
        out[2 * n + 1].len = p - out[2 * n + 1].data;

        sn->dirty = 0;
        sh->session_dirty--;
        n++;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return n;
}


/* a push that failed: its sessions go in the next one */

void
ngx_http_llmroute_session_unpushed(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *pairs, ngx_uint_t n)
{
    u_char                             key[NGX_HTTP_LLMROUTE_SESSION_LEN];
    ngx_uint_t                         i;
    ngx_http_llmroute_session_node_t  *sn;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    for (i = 0; i < n; i++) {
        if (ngx_http_llmroute_session_unhex(&pairs[2 * i], key) != NGX_OK) {
            continue;
        }

        /* one evicted since has nothing left to push */

        sn = ngx_http_llmroute_session_find(lmcf->sh, key);

        if (sn) {
            ngx_http_llmroute_session_dirty(lmcf->sh, sn);
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/*
 * Another node's answer for a session: kept when newer than ours, with
 * the previous holder it left (whose cache lives on) and its answers.
 */

void
ngx_http_llmroute_session_learn(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *hex, ngx_str_t *value)
{
    u_char                            *p, *last, *f;
    uint64_t                           v[NGX_HTTP_LLMROUTE_SESSION_FIELDS];
    ngx_int_t                          d;
    ngx_uint_t                         i;
    u_char                             key[NGX_HTTP_LLMROUTE_SESSION_LEN];
    ngx_http_llmroute_session_node_t  *sn;

    if (ngx_http_llmroute_session_unhex(hex, key) != NGX_OK) {
        return;
    }

    ngx_memzero(v, sizeof(v));

    p = value->data;
    last = p + value->len;

    /* 5 fields at least (an older node's), up to all */

    for (i = 0; i < NGX_HTTP_LLMROUTE_SESSION_FIELDS && p < last; i++) {
        f = p;

        while (p < last && *p != ' ') {
            p++;
        }

        d = ngx_atoof(f, p - f);
        if (d == NGX_ERROR) {
            return;
        }

        v[i] = (uint64_t) d;
        p++;
    }

    if (i < 5 || v[0] == 0 || v[1] >= NGX_HTTP_LLMROUTE_NTIERS
        || v[0] > 0xffffffff || v[5] > 0xffffffff)
    {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    sn = ngx_http_llmroute_session_lookup(lmcf, key, v[3]);

    if (sn && (sn->holder == 0 || v[3] > sn->last)) {
        sn->holder = (uint32_t) v[0];
        sn->tier = v[1];
        sn->cached = v[2];
        sn->last = v[3];
        sn->turns = v[4];

        if (i > 5) {
            sn->prev = (uint32_t) v[5];
            sn->prev_cached = v[6];
            sn->prev_last = v[7];
            sn->out = v[8];
            sn->answers = v[9];
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


static ngx_int_t
ngx_http_llmroute_session_unhex(ngx_str_t *hex, u_char *key)
{
    ngx_int_t   d;
    ngx_uint_t  i;

    if (hex->len != 2 * NGX_HTTP_LLMROUTE_SESSION_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_LLMROUTE_SESSION_LEN; i++) {
        d = ngx_hextoi(hex->data + 2 * i, 2);
        if (d == NGX_ERROR) {
            return NGX_ERROR;
        }

        key[i] = (u_char) d;
    }

    return NGX_OK;
}


/* a model holds this many tokens of the session's prompt */

static void
ngx_http_llmroute_session_holds(ngx_http_llmroute_ctx_t *ctx,
    ngx_uint_t model, uint64_t tokens)
{
    /* providers cache nothing shorter */

    if (tokens < NGX_HTTP_LLMROUTE_CACHE_MIN || ctx->want.cached == NULL) {
        return;
    }

    ctx->want.cached[model] = ngx_max(ctx->want.cached[model],
                                      (size_t) tokens);
}


/*
 * A request that ends without its log phase still unpins its entry: the
 * ctx's pool cleanup calls this
 */

void
ngx_http_llmroute_session_unpin(ngx_http_llmroute_ctx_t *ctx)
{
    ngx_http_llmroute_main_conf_t     *lmcf;
    ngx_http_llmroute_session_node_t  *sn;

    sn = ctx->session_node;

    if (sn == NULL) {
        return;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_llmroute_module);

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    sn->count--;
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    ctx->session_node = NULL;
}


u_char *
ngx_http_llmroute_session_hex(u_char *p, ngx_http_llmroute_ctx_t *ctx)
{
    return ngx_hex_dump(p, ctx->session, NGX_HTTP_LLMROUTE_SESSION_LEN);
}


/*
 * The key, first found of: llmroute_session's value, X-Claude-Code-
 * Session-Id, x-session-id, Anthropic's metadata.user_id, OpenAI's
 * prompt_cache_key, else the prefix every turn repeats (system messages,
 * tools, first user message).  Only the keyed hash is kept.
 */

static ngx_int_t
ngx_http_llmroute_session_key(ngx_http_request_t *r,
    ngx_http_llmroute_ctx_t *ctx, ngx_http_llmroute_loc_conf_t *lcf)
{
    u_char                            *p;
    ngx_str_t                          v;
    ngx_table_elt_t                   *h;
    ngx_http_llmroute_req_t           *req;
    ngx_http_llmroute_siphash_t        sh;
    ngx_http_llmroute_memo_key_t       key;
    ngx_http_llmroute_main_conf_t     *lmcf;
    ngx_http_llmroute_session_sink_t   sink;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llmroute_module);
    req = &ctx->req;

    ngx_str_null(&v);

    if (lcf->session
        && ngx_http_complex_value(r, lcf->session, &v) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (v.len == 0) {
        h = ctx->session_header[0] ? ctx->session_header[0]
                                   : ctx->session_header[1];
        if (h) {
            v = h->value;
        }
    }

    if (v.len == 0 && req->user_id.len) {
        v = req->user_id;
        ngx_http_llmroute_session_user_id(&v);
    }

    if (v.len == 0) {
        v = req->cache_key;
    }

#if (NGX_HTTP_LLMROUTE_SESSION_LEN != NGX_HTTP_LLMROUTE_SIPHASH_LEN)
#error "the session key is the whole SipHash result"
#endif

    if (v.len) {
        ngx_http_llmroute_siphash_init(&sh,
                                       ngx_http_llmroute_session_salt(lmcf));
        ngx_http_llmroute_siphash_update(&sh, "k", 1);
        ngx_http_llmroute_siphash_update(&sh, v.data, v.len);
        ngx_http_llmroute_siphash_final(&sh, ctx->session);

        return NGX_OK;
    }

    /*
     * the prefix: its pieces first; the same pieces as a turn before
     * (an agent re-sends its prefix every turn) give the same key back
     */

    sink.sh = NULL;
    sink.key = &key;
    ngx_http_llmroute_memo_start(&key);

    if (ngx_http_llmroute_session_prefix(req, &sink) != NGX_OK) {
        return NGX_DECLINED;        /* nothing that recurs */
    }

    p = ngx_http_llmroute_memo_find(&ngx_http_llmroute_session_memo, &key);

    if (p) {
        ngx_memcpy(ctx->session, p, NGX_HTTP_LLMROUTE_SESSION_LEN);
        return NGX_OK;
    }

    ngx_http_llmroute_siphash_init(&sh, ngx_http_llmroute_session_salt(lmcf));

    sink.sh = &sh;
    sink.key = NULL;

    (void) ngx_http_llmroute_session_prefix(req, &sink);

    ngx_http_llmroute_siphash_final(&sh, ctx->session);

    ngx_http_llmroute_memo_keep(&ngx_http_llmroute_session_memo, &key,
                                ctx->session, NGX_HTTP_LLMROUTE_SESSION_LEN);

    return NGX_OK;
}


/*
 * The prefix every turn repeats: system messages, the first user message,
 * tools; NGX_DECLINED when it has neither a user message nor tools.  Fed
 * to the hash, or collected as the memo's key.
 */

static ngx_int_t
ngx_http_llmroute_session_prefix(ngx_http_llmroute_req_t *req,
    ngx_http_llmroute_session_sink_t *sink)
{
    ngx_uint_t                i, user;
    ngx_http_llmroute_msg_t  *msg;

    ngx_http_llmroute_session_feed(sink, (u_char *) "p", 1);
    user = 0;

    for (i = 0; i < req->nmsgs && !user; i++) {
        msg = &req->msgs[i];

        if (msg->role != NGX_HTTP_LLMROUTE_ROLE_SYSTEM
            && msg->role != NGX_HTTP_LLMROUTE_ROLE_USER)
        {
            continue;
        }

        user = (msg->role == NGX_HTTP_LLMROUTE_ROLE_USER);
        ngx_http_llmroute_session_hash_part(sink, req->body + msg->start,
                                            msg->end - msg->start);
    }

    if (!user && req->tools_end == 0) {
        return NGX_DECLINED;
    }

    ngx_http_llmroute_session_hash_part(sink, req->body + req->tools_start,
                                        req->tools_end - req->tools_start);

    return NGX_OK;
}


static ngx_inline void
ngx_http_llmroute_session_feed(ngx_http_llmroute_session_sink_t *sink,
    u_char *data, size_t len)
{
    if (sink->key) {
        ngx_http_llmroute_memo_add(sink->key, data, len, 0);

    } else {
        ngx_http_llmroute_siphash_update(sink->sh, data, len);
    }
}


/*
 * Claude Code's user_id names the session: "..._session_<uuid>", or in
 * newer versions a JSON string holding "session_id"; else the whole value.
 */

static void
ngx_http_llmroute_session_user_id(ngx_str_t *v)
{
    u_char  *p, *last, *q;

    last = v->data + v->len;

    p = ngx_strlcasestrn(v->data, last, (u_char *) "session_id", 10 - 1);

    if (p) {
        p += 10;

        while (p < last && (*p == '\\' || *p == '"' || *p == ':'
                            || *p == ' '))
        {
            p++;
        }

        for (q = p; q < last && *q != '\\' && *q != '"'; q++) {
            /* void */
        }

        if (q > p) {
            v->data = p;
            v->len = q - p;
        }

        return;
    }

    p = ngx_strlcasestrn(v->data, last, (u_char *) "_session_", 9 - 1);

    if (p && p + 9 < last) {
        v->data = p + 9;
        v->len = last - v->data;
    }
}


/*
 * The hash (SipHash-1-3, 128 bits) is keyed with a digest of the
 * providers' keys: every node of a cluster derives the same session hash
 * (they share the catalog), while the key stored in the zone, Redis and
 * logs reveals no client's session id.  MD5 over the bytes with the digest
 * as a salt cost three times as much per byte.
 */


/*
 * One part of a session's prefix: its length and its first and last
 * NGX_HTTP_LLMROUTE_SESSION_SAMPLE bytes.  An agent's prefix is tens of KB
 * (system prompt, tool schemas); MD5 over all of it cost more than the
 * rest of the request (callgrind, 49 KB agent body: 430k of 661k
 * instructions; over the samples, MD5 still cost 38k and SipHash-1-3
 * costs 16k).  Two prefixes alike in length, head and tail of every
 * part share a session: that costs a routing choice, never an answer.
 */

static ngx_inline void
ngx_http_llmroute_session_hash_part(ngx_http_llmroute_session_sink_t *sink,
    u_char *p, size_t len)
{
    uint64_t  w;

    w = (uint64_t) len;

#if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    w = __builtin_bswap64(w);       /* the same 8 bytes on every node */
#endif

    if (sink->key) {
        ngx_http_llmroute_memo_add_word(sink->key, w, 0);

    } else {
        ngx_http_llmroute_siphash_update(sink->sh, (u_char *) &w, 8);
    }

    if (len <= 2 * NGX_HTTP_LLMROUTE_SESSION_SAMPLE) {
        ngx_http_llmroute_session_feed(sink, p, len);
        return;
    }

    ngx_http_llmroute_session_feed(sink, p, NGX_HTTP_LLMROUTE_SESSION_SAMPLE);
    ngx_http_llmroute_session_feed(sink,
                                   p + len - NGX_HTTP_LLMROUTE_SESSION_SAMPLE,
                                   NGX_HTTP_LLMROUTE_SESSION_SAMPLE);
}


/* the hash key: a digest of the providers' keys, once per worker */

static u_char *
ngx_http_llmroute_session_salt(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_uint_t                     i;
    ngx_http_llmroute_provider_t  *p;

    static u_char      salt[NGX_HTTP_LLMROUTE_SIPHASH_KEY];
    static ngx_uint_t  salted;

    if (!salted) {
        ngx_md5_t  m;

        ngx_md5_init(&m);
        ngx_md5_update(&m, "llmroute session", 16);

        for (i = 0; i < lmcf->cat.nproviders; i++) {
            p = &lmcf->cat.providers[i];
            ngx_md5_update(&m, p->key.data, p->key.len);
        }

        ngx_md5_final(salt, &m);
        salted = 1;
    }

    return salt;
}


/* the entry, created when new (zone mutex held); NULL when full */

static ngx_http_llmroute_session_node_t *
ngx_http_llmroute_session_lookup(ngx_http_llmroute_main_conf_t *lmcf,
    u_char *key, uint64_t now)
{
    uint32_t                           hash;
    ngx_uint_t                         i;
    ngx_queue_t                       *q;
    ngx_http_llmroute_shctx_t         *sh;
    ngx_http_llmroute_session_node_t  *sn;

    sh = lmcf->sh;

    /* as limit_req: each lookup expires up to two idle entries */

    for (i = 0; i < 2 && !ngx_queue_empty(&sh->session_lru); i++) {
        q = ngx_queue_last(&sh->session_lru);
        sn = ngx_queue_data(q, ngx_http_llmroute_session_node_t, queue);

        if (sn->count || sn->last + NGX_HTTP_LLMROUTE_SESSION_IDLE > now) {
            break;
        }

        ngx_http_llmroute_session_free(lmcf, sn);
    }

    sn = ngx_http_llmroute_session_find(sh, key);

    if (sn) {
        ngx_queue_remove(&sn->queue);
        ngx_queue_insert_head(&sh->session_lru, &sn->queue);
        return sn;
    }

    sn = ngx_slab_calloc_locked(lmcf->shpool,
                                sizeof(ngx_http_llmroute_session_node_t));

    /* full: the least recently used unpinned sessions go */

    for (i = 0; sn == NULL && i < 8; i++) {
        if (!ngx_http_llmroute_session_evict_locked(lmcf)) {
            break;
        }

        sn = ngx_slab_calloc_locked(lmcf->shpool,
                                    sizeof(ngx_http_llmroute_session_node_t));
    }

    if (sn == NULL) {
        return NULL;
    }

    ngx_memcpy(&hash, key, sizeof(uint32_t));

    sn->node.key = hash;
    ngx_memcpy(sn->key, key, NGX_HTTP_LLMROUTE_SESSION_LEN);
    sn->last = now;

    ngx_rbtree_insert(&sh->sessions, &sn->node);
    ngx_queue_insert_head(&sh->session_lru, &sn->queue);

    return sn;
}


/* the entry, if there is one (zone mutex held) */

static ngx_http_llmroute_session_node_t *
ngx_http_llmroute_session_find(ngx_http_llmroute_shctx_t *sh, u_char *key)
{
    uint32_t                           hash;
    ngx_int_t                          rc;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_llmroute_session_node_t  *sn;

    ngx_memcpy(&hash, key, sizeof(uint32_t));

    node = sh->sessions.root;
    sentinel = sh->sessions.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        sn = (ngx_http_llmroute_session_node_t *) node;

        rc = ngx_memcmp(key, sn->key, NGX_HTTP_LLMROUTE_SESSION_LEN);

        if (rc == 0) {
            return sn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The least recently used session no request is using goes (zone mutex
 * held): for a new session, or for a client node (limits come first).
 * Returns 0 when there is none.
 */

ngx_uint_t
ngx_http_llmroute_session_evict_locked(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_queue_t                       *q;
    ngx_http_llmroute_shctx_t         *sh;
    ngx_http_llmroute_session_node_t  *sn;

    sh = lmcf->sh;

    for (q = ngx_queue_last(&sh->session_lru);
         q != ngx_queue_sentinel(&sh->session_lru);
         q = ngx_queue_prev(q))
    {
        sn = ngx_queue_data(q, ngx_http_llmroute_session_node_t, queue);

        if (sn->count == 0) {
            (void) ngx_atomic_fetch_add(
                       &sh->moves[NGX_HTTP_LLMROUTE_MOVE_EVICTED], 1);
            ngx_http_llmroute_session_free(lmcf, sn);
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_llmroute_session_free(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_http_llmroute_session_node_t *sn)
{
    if (sn->dirty) {
        lmcf->sh->session_dirty--;
    }

    ngx_queue_remove(&sn->queue);
    ngx_rbtree_delete(&lmcf->sh->sessions, &sn->node);
    ngx_slab_free_locked(lmcf->shpool, sn);
}


static void
ngx_http_llmroute_session_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                 **p;
    ngx_http_llmroute_session_node_t   *sn, *snt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            sn = (ngx_http_llmroute_session_node_t *) node;
            snt = (ngx_http_llmroute_session_node_t *) temp;

            p = (ngx_memcmp(sn->key, snt->key, NGX_HTTP_LLMROUTE_SESSION_LEN)
                 < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* the catalog model a holder hash names, -1 when none does any more */

static ngx_int_t
ngx_http_llmroute_session_model(ngx_http_llmroute_main_conf_t *lmcf,
    uint32_t holder)
{
    ngx_uint_t                  i;
    ngx_http_llmroute_model_t  *m;

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        m = &lmcf->cat.models[i];

        if (ngx_http_llmroute_session_holder(m) == holder) {
            return i;
        }
    }

    return -1;
}


/*
 * The crc32 of a model's "provider/id" that names it in an entry (and in
 * Redis): computed once per worker, not on every lookup.
 */

static uint32_t
ngx_http_llmroute_session_holder(ngx_http_llmroute_model_t *m)
{
    if (m->holder == 0) {
        m->holder = ngx_crc32_short(m->full.data, m->full.len);
    }

    return m->holder;
}


/* wall-clock ms: comparable across workers, and across nodes via Redis */

static uint64_t
ngx_http_llmroute_session_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
