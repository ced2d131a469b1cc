
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Cluster state through Redis, never on a request's path.  Every node
 * decides from its own zone; one worker per node (worker 0) syncs the zone
 * with Redis every "sync" interval, over hiredis's async API driven by
 * nginx's event loop (an adapter of our own below):
 *
 *   push  the node's deltas since the last sync (client and provider
 *         requests/tokens, client spend, provider cooldowns), in one Lua
 *         script carrying a sequence number: a batch re-sent after a
 *         timeout is applied once, so nothing is lost or counted twice;
 *   pull  in the same script's reply, what the OTHER nodes counted (last
 *         minute, current budget period) and the cluster's cooldowns,
 *         which admission adds to the local counts.
 *
 * Redis down or hung: requests go on with local counts; the batch waits
 * and is re-sent after reconnecting (capped backoff).
 */


#include <ngx_http_llmroute_module.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_HTTP_LLMROUTE_REDIS_MAX_BACKOFF  5000


typedef struct {
    ngx_addr_t                       addr;
    ngx_str_t                        host;      /* numeric, NUL-ended */
    ngx_int_t                        port;      /* 0: unix socket */
    ngx_str_t                        password;
    ngx_uint_t                       db;
    ngx_str_t                        prefix;    /* "{llmroute}:" */
    ngx_msec_t                       timeout;
    ngx_msec_t                       sync;
} ngx_http_llmroute_redis_conf_t;


/* one pushed entity, kept until Redis confirms the batch */
typedef struct {
    ngx_str_t                        name;
    ngx_uint_t                       client;    /* else a provider */
    ngx_uint_t                       provider;
    ngx_uint_t                       period;
} ngx_http_llmroute_redis_item_t;


typedef struct {
    ngx_http_llmroute_main_conf_t   *lmcf;
    ngx_http_llmroute_redis_conf_t  *conf;
    redisAsyncContext               *ac;
    ngx_connection_t                *conn;
    ngx_event_t                      sync_ev;
    ngx_event_t                      timeout_ev;
    ngx_msec_t                       backoff;
    ngx_str_t                        node;
    uint64_t                         seq;
    ngx_uint_t                       pricing;   /* replies awaited */
    uint64_t                         sessions_since;    /* ms */
    ngx_pool_t                      *sessions_pool;     /* in flight */
    ngx_str_t                       *sessions_pairs;    /* pushed by it */
    ngx_uint_t                       sessions_n;
    uint64_t                         sessions_sent;     /* ms */

    /* the batch in flight (or waiting to be re-sent) */
    ngx_pool_t                      *pool;
    int                              argc;
    const char                     **argv;
    size_t                          *argvlen;
    ngx_http_llmroute_redis_item_t  *items;
    ngx_uint_t                       nitems;

    unsigned                         up:1;
    unsigned                         connecting:1;
    unsigned                         busy:1;
    unsigned                         down_logged:1;
    unsigned                         exiting:1;
} ngx_http_llmroute_redis_t;


static void ngx_http_llmroute_redis_connect(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_llmroute_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_llmroute_redis_down(ngx_http_llmroute_redis_t *rd,
    const char *why);
static void ngx_http_llmroute_redis_sync_handler(ngx_event_t *ev);
static void ngx_http_llmroute_redis_timeout_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_llmroute_redis_batch(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_send(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_llmroute_redis_ignore(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_llmroute_redis_pong(redisAsyncContext *ac, void *r,
    void *privdata);
static int64_t ngx_http_llmroute_redis_int(redisReply *r);
static void ngx_http_llmroute_redis_prices(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_sessions(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_sessions_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_llmroute_redis_version(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_llmroute_redis_price(redisAsyncContext *ac, void *r,
    void *privdata);

static ngx_int_t ngx_http_llmroute_redis_attach(
    ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_add_read(void *privdata);
static void ngx_http_llmroute_redis_del_read(void *privdata);
static void ngx_http_llmroute_redis_add_write(void *privdata);
static void ngx_http_llmroute_redis_del_write(void *privdata);
static void ngx_http_llmroute_redis_cleanup(void *privdata);
static void ngx_http_llmroute_redis_read_handler(ngx_event_t *ev);
static void ngx_http_llmroute_redis_write_handler(ngx_event_t *ev);


/*
 * A batch an exiting worker could not have confirmed (Redis slow or down
 * at a reload): its deltas were taken out of the zone, so it is handed to
 * the next sync worker through the zone and re-sent as is.  Its sequence
 * key (node and the old pid) makes a batch Redis applied already a no-op.
 */
typedef struct ngx_http_llmroute_orphan_s  ngx_http_llmroute_orphan_t;

struct ngx_http_llmroute_orphan_s {
    ngx_http_llmroute_orphan_t      *next;
    int                              argc;      /* after EVAL and script */
    size_t                           len[1];    /* argc, then the bytes */
};

static void ngx_http_llmroute_redis_orphan_save(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_orphans_send(ngx_http_llmroute_redis_t *rd);
static void ngx_http_llmroute_redis_orphan_reply(redisAsyncContext *ac,
    void *r, void *privdata);


/* this worker's connection: a per-process singleton, set up per cycle */
static ngx_http_llmroute_redis_t  *ngx_http_llmroute_redis_worker;


/*
 * KEYS[1] the batch's sequence key, then per item a window key, a spend
 * key and this node's spend key.  ARGV: seq, now (s), now (ms), node, then
 * per item: kind ("c" or "p"), requests, tokens, spend, cooldown end (ms).
 * Returns per item: others' requests and tokens in the last minute,
 * others' spend this period, the cluster's cooldown end.
 */

static const char  ngx_http_llmroute_redis_script[] =
    "local applied = redis.call('GET', KEYS[1]) == ARGV[1]\n"
    "local now, nowms, node = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]\n"
    "local out = {}\n"
    "local n = (#KEYS - 1) / 5\n"
    "for i = 0, n - 1 do\n"
    "  local w, s, so, cool = KEYS[2+i*5], KEYS[3+i*5], KEYS[4+i*5],"
    " KEYS[5+i*5]\n"
    "  local a = 5 + i * 5\n"
    "  local dr, dt = tonumber(ARGV[a+1]), tonumber(ARGV[a+2])\n"
    "  local ds, cu = tonumber(ARGV[a+3]), tonumber(ARGV[a+4])\n"
    "  if not applied then\n"
    "    if dr ~= 0 then\n"
    "      redis.call('HINCRBY', w, 'r' .. now, dr)\n"
    "      redis.call('HINCRBY', w, node .. ':r' .. now, dr)\n"
    "    end\n"
    "    if dt ~= 0 then\n"
    "      redis.call('HINCRBY', w, 't' .. now, dt)\n"
    "      redis.call('HINCRBY', w, node .. ':t' .. now, dt)\n"
    "    end\n"
    "    if dr ~= 0 or dt ~= 0 then redis.call('EXPIRE', w, 120) end\n"
    "    if ds ~= 0 then\n"
    "      redis.call('INCRBY', s, ds)\n"
    "      redis.call('EXPIRE', s, 3000000)\n"
    "      redis.call('INCRBY', so, ds)\n"
    "      redis.call('EXPIRE', so, 3000000)\n"
    "    end\n"
    "    if cu > nowms then\n"
    "      local old = tonumber(redis.call('GET', cool) or '0')\n"
    "      if cu > old then\n"
    "        redis.call('SET', cool, cu, 'PX', cu - nowms)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local h = redis.call('HGETALL', w)\n"
    "  local rr, rt = 0, 0\n"
    "  local mine = node .. ':'\n"
    "  for j = 1, #h, 2 do\n"
    "    local k, v = h[j], tonumber(h[j+1])\n"
    "    local own = string.sub(k, 1, #mine) == mine\n"
    "    local f = own and string.sub(k, #mine + 1) or k\n"
    "    local sec = tonumber(string.sub(f, 2))\n"
    "    if sec and sec <= now - 60 then\n"
    "      redis.call('HDEL', w, k)\n"
    "    elseif sec and string.sub(f, 1, 1) == 'r' then\n"
    "      rr = rr + (own and -v or v)\n"
    "    elseif sec and string.sub(f, 1, 1) == 't' then\n"
    "      rt = rt + (own and -v or v)\n"
    "    end\n"
    "  end\n"
    "  local sp = tonumber(redis.call('GET', s) or '0')\n"
    "    - tonumber(redis.call('GET', so) or '0')\n"
    "  out[#out+1] = rr\n"
    "  out[#out+1] = rt\n"
    "  out[#out+1] = sp\n"
    "  out[#out+1] = tonumber(redis.call('GET', cool) or '0')\n"
    "  out[#out+1] = redis.call('EXISTS', KEYS[6+i*5])\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', 3600)\n"
    "return out\n";


/*
 * Sessions' cache holders: KEYS[1] an index (sorted set, score = the push
 * time in ms), KEYS[2] a hash of session -> "holder tier cached last
 * turns".
 * ARGV: now (ms), since (ms), then session, value pairs this node answered.
 * Returns session, value pairs pushed (by any node) after "since"; entries
 * older than an hour are dropped.
 */

static const char  ngx_http_llmroute_redis_sessions_script[] =
    "local z, h = KEYS[1], KEYS[2]\n"
    "local now, since = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "for i = 3, #ARGV, 2 do\n"
    "  redis.call('HSET', h, ARGV[i], ARGV[i+1])\n"
    "  redis.call('ZADD', z, now, ARGV[i])\n"
    "end\n"
    "local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - 3600000,"
    " 'LIMIT', 0, 256)\n"
    "for _, k in ipairs(old) do\n"
    "  redis.call('HDEL', h, k)\n"
    "  redis.call('ZREM', z, k)\n"
    "end\n"
    "local out = {}\n"
    "for _, k in ipairs(redis.call('ZRANGEBYSCORE', z, '(' .. since, '+inf',"
    " 'LIMIT', 0, 4096)) do\n"
    "  out[#out+1] = k\n"
    "  out[#out+1] = redis.call('HGET', h, k) or ''\n"
    "end\n"
    "return out\n";


/*
 * llmroute_redis ADDR [password=P] [db=N] [prefix=P] [timeout=T] [sync=T];
 * ADDR is a numeric IP:PORT or unix:/path: resolving a name would block.
 */

char *
ngx_http_llmroute_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char                          *p, *last;
    ngx_int_t                        n;
    ngx_str_t                       *value, s, name;
    ngx_uint_t                       i;
    ngx_http_llmroute_redis_conf_t  *rc;

    if (lmcf->redis) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_http_llmroute_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    rc->timeout = 200;
    rc->sync = 100;
    ngx_str_set(&name, "llmroute");

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        rc->host.data = value[1].data + 5;
        rc->host.len = value[1].len - 5;

    } else {
        last = value[1].data + value[1].len;
        p = ngx_strlchr(value[1].data, last, ':');

        n = p ? ngx_atoi(p + 1, last - p - 1) : NGX_ERROR;

        if (p == NULL || n < 1 || n > 65535
            || ngx_inet_addr(value[1].data, p - value[1].data) == INADDR_NONE)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid redis address \"%V\", expected a "
                               "numeric IPv4 address and port, or unix:/path",
                               &value[1]);
            return NGX_CONF_ERROR;
        }

        rc->port = n;
        rc->host.len = p - value[1].data;
        rc->host.data = ngx_pnalloc(cf->pool, rc->host.len + 1);
        if (rc->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        *ngx_cpymem(rc->host.data, value[1].data, rc->host.len) = '\0';
    }

    for (i = 2; i < cf->args->nelts; i++) {
        s = value[i];

        if (ngx_strncmp(s.data, "password=", 9) == 0 && s.len > 9) {
            rc->password.data = s.data + 9;
            rc->password.len = s.len - 9;
            continue;
        }

        if (ngx_strncmp(s.data, "db=", 3) == 0) {
            n = ngx_atoi(s.data + 3, s.len - 3);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            rc->db = n;
            continue;
        }

        if (ngx_strncmp(s.data, "prefix=", 7) == 0 && s.len > 7) {
            name.data = s.data + 7;
            name.len = s.len - 7;

            if (name.data[name.len - 1] == ':') {
                name.len--;
            }

            if (name.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "timeout=", 8) == 0) {
            s.data += 8;
            s.len -= 8;
            rc->timeout = ngx_parse_time(&s, 0);
            if (rc->timeout == (ngx_msec_t) NGX_ERROR || rc->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "sync=", 5) == 0) {
            s.data += 5;
            s.len -= 5;
            rc->sync = ngx_parse_time(&s, 0);
            if (rc->sync == (ngx_msec_t) NGX_ERROR || rc->sync == 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    /* a hash tag: every key in one Redis Cluster slot, as Lua needs */

    rc->prefix.len = name.len + sizeof("{}:") - 1;
    rc->prefix.data = ngx_pnalloc(cf->pool, rc->prefix.len);
    if (rc->prefix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(rc->prefix.data, "{%V}:", &name);

    lmcf->redis = rc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * How long a client's first request on this node may wait for the sync
 * that brings the cluster's counts for it (two intervals and a round
 * trip); 0 without Redis or while it is down: then nothing waits.
 */

ngx_msec_t
ngx_http_llmroute_redis_first_sync(ngx_http_llmroute_main_conf_t *lmcf)
{
    ngx_http_llmroute_redis_conf_t  *conf;

    conf = lmcf->redis;

    if (conf == NULL || lmcf->sh == NULL || !lmcf->sh->redis_up) {
        return 0;
    }

    return 2 * conf->sync + ngx_min(conf->timeout, 500);
}


ngx_int_t
ngx_http_llmroute_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_llmroute_redis_t       *rd;
    ngx_http_conf_ctx_t             *hctx;
    ngx_http_llmroute_main_conf_t   *lmcf;

    ngx_http_llmroute_redis_worker = NULL;

    hctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    if (hctx == NULL) {
        return NGX_OK;
    }

    lmcf = hctx->main_conf[ngx_http_llmroute_module.ctx_index];

    /* one syncing worker per node */

    if (lmcf == NULL || lmcf->redis == NULL || lmcf->sh == NULL
        || ngx_worker != 0 || ngx_process != NGX_PROCESS_WORKER)
    {
        return NGX_OK;
    }

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_http_llmroute_redis_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    rd->lmcf = lmcf;
    rd->conf = lmcf->redis;
    rd->backoff = 100;

    /* this node: stable across reloads (the master stays) */

    rd->node.data = ngx_pnalloc(cycle->pool, cycle->hostname.len
                                             + NGX_INT64_LEN + 1);
    if (rd->node.data == NULL) {
        return NGX_ERROR;
    }

    rd->node.len = ngx_sprintf(rd->node.data, "%V/%P", &cycle->hostname,
                               getppid())
                   - rd->node.data;

    rd->seq = (uint64_t) ngx_time() * 1000 + ngx_pid % 1000;

    rd->sync_ev.handler = ngx_http_llmroute_redis_sync_handler;
    rd->sync_ev.data = rd;
    rd->sync_ev.log = cycle->log;
    rd->sync_ev.cancelable = 1;

    rd->timeout_ev.handler = ngx_http_llmroute_redis_timeout_handler;
    rd->timeout_ev.data = rd;
    rd->timeout_ev.log = cycle->log;
    rd->timeout_ev.cancelable = 1;

    ngx_http_llmroute_redis_worker = rd;

    ngx_http_llmroute_redis_connect(rd);

    ngx_add_timer(&rd->sync_ev, rd->conf->sync);

    return NGX_OK;
}


void
ngx_http_llmroute_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_llmroute_redis_t  *rd;

    rd = ngx_http_llmroute_redis_worker;

    if (rd == NULL) {
        return;
    }

    rd->exiting = 1;

    if (rd->ac) {
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
    }

    if (rd->pool) {
        ngx_http_llmroute_redis_orphan_save(rd);
        ngx_destroy_pool(rd->pool);
        rd->pool = NULL;
    }

    ngx_http_llmroute_redis_worker = NULL;
}


static void
ngx_http_llmroute_redis_orphan_save(ngx_http_llmroute_redis_t *rd)
{
    u_char                         *p;
    size_t                          size;
    ngx_int_t                       i;
    ngx_http_llmroute_orphan_t     *o;
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = rd->lmcf;
    size = offsetof(ngx_http_llmroute_orphan_t, len)
           + (rd->argc - 2) * sizeof(size_t);

    for (i = 2; i < rd->argc; i++) {
        size += rd->argvlen[i];
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    o = ngx_slab_alloc_locked(lmcf->shpool, size);

    if (o == NULL) {
        ngx_shmtx_unlock(&lmcf->shpool->mutex);
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "llmroute: zone is full, an unconfirmed redis batch "
                      "is lost");
        return;
    }

    o->argc = rd->argc - 2;
    p = (u_char *) &o->len[o->argc];

    for (i = 2; i < rd->argc; i++) {
        o->len[i - 2] = rd->argvlen[i];
        p = ngx_cpymem(p, rd->argv[i], rd->argvlen[i]);
    }

    o->next = lmcf->sh->orphans;
    lmcf->sh->orphans = o;

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/* batches of exited workers, sent before this worker's own */

static void
ngx_http_llmroute_redis_orphans_send(ngx_http_llmroute_redis_t *rd)
{
    int                             i;
    u_char                         *p;
    size_t                         *argvlen;
    const char                    **argv;
    ngx_http_llmroute_orphan_t     *o, *next;
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = rd->lmcf;

    if (lmcf->sh->orphans == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    o = lmcf->sh->orphans;
    lmcf->sh->orphans = NULL;
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    for ( /* void */ ; o; o = next) {
        next = o->next;

        /* hiredis formats the command at once: argv is only borrowed */

        argv = ngx_alloc((o->argc + 2) * (sizeof(char *) + sizeof(size_t)),
                         ngx_cycle->log);
        if (argv == NULL) {
            o->next = NULL;
            ngx_http_llmroute_redis_orphan_reply(NULL, NULL, o);
            continue;
        }

        argvlen = (size_t *) &argv[o->argc + 2];

        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_llmroute_redis_script;
        argvlen[1] = sizeof(ngx_http_llmroute_redis_script) - 1;

        p = (u_char *) &o->len[o->argc];

        for (i = 0; i < o->argc; i++) {
            argv[i + 2] = (char *) p;
            argvlen[i + 2] = o->len[i];
            p += o->len[i];
        }

        if (redisAsyncCommandArgv(rd->ac,
                                  ngx_http_llmroute_redis_orphan_reply, o,
                                  o->argc + 2, argv, argvlen)
            != REDIS_OK)
        {
            ngx_http_llmroute_redis_orphan_reply(NULL, NULL, o);
        }

        ngx_free(argv);
    }
}


/* applied (or applied before): freed; no answer: kept for the next try */

static void
ngx_http_llmroute_redis_orphan_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *reply = r;

    ngx_http_llmroute_orphan_t     *o;
    ngx_http_llmroute_redis_t      *rd;
    ngx_http_llmroute_main_conf_t  *lmcf;

    o = privdata;
    rd = ngx_http_llmroute_redis_worker;

    if (rd == NULL) {
        return;                 /* the zone keeps it: lost only to us */
    }

    lmcf = rd->lmcf;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        ngx_slab_free_locked(lmcf->shpool, o);

    } else {
        o->next = lmcf->sh->orphans;
        lmcf->sh->orphans = o;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


static void
ngx_http_llmroute_redis_connect(ngx_http_llmroute_redis_t *rd)
{
    redisAsyncContext  *ac;

    if (rd->exiting || rd->ac) {
        return;
    }

    ac = rd->conf->port
         ? redisAsyncConnect((char *) rd->conf->host.data, rd->conf->port)
         : redisAsyncConnectUnix((char *) rd->conf->host.data);

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "llmroute: could not allocate a redis context");
        return;
    }

    if (ac->err) {
        ngx_http_llmroute_redis_down(rd, ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    ac->data = rd;
    rd->ac = ac;
    rd->connecting = 1;

    if (ngx_http_llmroute_redis_attach(rd) != NGX_OK) {
        rd->ac = NULL;
        redisAsyncFree(ac);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_http_llmroute_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_llmroute_redis_disconnected);

    /* queued until the connection is up; replies are checked by PING */

    if (rd->conf->password.len) {
        redisAsyncCommand(ac, ngx_http_llmroute_redis_ignore, NULL,
                          "AUTH %b", rd->conf->password.data,
                          rd->conf->password.len);
    }

    if (rd->conf->db) {
        redisAsyncCommand(ac, ngx_http_llmroute_redis_ignore, NULL,
                          "SELECT %d", (int) rd->conf->db);
    }

    /* a connect that hangs counts as down too */
    ngx_add_timer(&rd->timeout_ev, rd->conf->timeout);
}


static void
ngx_http_llmroute_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_llmroute_redis_t  *rd;

    rd = ac->data;

    if (rd == NULL) {
        return;
    }

    rd->connecting = 0;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        rd->ac = NULL;
        rd->up = 0;
        ngx_http_llmroute_redis_down(rd, ac->errstr);
        return;
    }

    /*
     * a hung server accepts connections too: up is when it answers (the
     * connect timer still runs until then)
     */

    redisAsyncCommand((redisAsyncContext *) ac, ngx_http_llmroute_redis_pong,
                      rd, "PING");
}


static void
ngx_http_llmroute_redis_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                 *reply = r;
    ngx_http_llmroute_redis_t  *rd;

    rd = privdata;

    if (rd == NULL || ac->data == NULL || reply == NULL
        || reply->type == REDIS_REPLY_ERROR)
    {
        return;
    }

    if (rd->timeout_ev.timer_set) {
        ngx_del_timer(&rd->timeout_ev);
    }

    rd->up = 1;
    rd->backoff = 100;
    rd->lmcf->sh->redis_up = 1;

    if (rd->down_logged) {
        rd->down_logged = 0;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "llmroute: redis %V:%i is up again", &rd->conf->host,
                      rd->conf->port);
    }
}


static void
ngx_http_llmroute_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_http_llmroute_redis_t  *rd;

    rd = ac->data;

    if (rd == NULL || rd->exiting) {
        return;
    }

    rd->ac = NULL;
    rd->up = 0;
    rd->busy = 0;
    ngx_http_llmroute_redis_down(rd, ac->errstr ? ac->errstr
                                                 : "connection closed");
}


/* logged once per outage; the next sync tick reconnects after backoff */

static void
ngx_http_llmroute_redis_down(ngx_http_llmroute_redis_t *rd, const char *why)
{
    if (!rd->down_logged) {
        rd->down_logged = 1;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "llmroute: redis %V:%i is down (%s), counting locally",
                      &rd->conf->host, rd->conf->port,
                      why ? why : "unknown error");
    }

    rd->up = 0;
    rd->lmcf->sh->redis_up = 0;
    rd->backoff = ngx_min(rd->backoff * 2, NGX_HTTP_LLMROUTE_REDIS_MAX_BACKOFF);

    if (rd->timeout_ev.timer_set) {
        ngx_del_timer(&rd->timeout_ev);
    }

    if (!rd->exiting) {
        if (rd->sync_ev.timer_set) {
            ngx_del_timer(&rd->sync_ev);
        }

        ngx_add_timer(&rd->sync_ev, rd->backoff);
    }
}


static void
ngx_http_llmroute_redis_sync_handler(ngx_event_t *ev)
{
    ngx_http_llmroute_redis_t  *rd;

    rd = ev->data;

    if (rd->exiting || ngx_exiting || ngx_quit) {
        return;
    }

    ngx_add_timer(&rd->sync_ev, rd->conf->sync);

    if (rd->ac == NULL) {
        ngx_http_llmroute_redis_connect(rd);
        return;
    }

    if (!rd->up || rd->busy) {
        return;
    }

    ngx_http_llmroute_redis_prices(rd);
    ngx_http_llmroute_redis_sessions(rd);

    ngx_http_llmroute_redis_orphans_send(rd);

    /* a batch not confirmed yet is re-sent as is: same sequence number */

    if (rd->pool == NULL && ngx_http_llmroute_redis_batch(rd) != NGX_OK) {
        return;
    }

    ngx_http_llmroute_redis_send(rd);
}


/* Redis did not answer in time: drop the connection, keep the batch */

static void
ngx_http_llmroute_redis_timeout_handler(ngx_event_t *ev)
{
    redisAsyncContext          *ac;
    ngx_http_llmroute_redis_t  *rd;

    rd = ev->data;
    ac = rd->ac;

    rd->ac = NULL;
    rd->busy = 0;
    rd->up = 0;

    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }

    ngx_http_llmroute_redis_down(rd, "timed out");
}


/* takes the zone's unpushed deltas into a batch (worker memory) */

#define NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM  5
#define NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM  5
#define NGX_HTTP_LLMROUTE_REDIS_REPLY_PER_ITEM 5

static ngx_int_t
ngx_http_llmroute_redis_batch(ngx_http_llmroute_redis_t *rd)
{
    u_char                           *p;
    time_t                            now;
    ngx_uint_t                        i, n, max, k, a;
    ngx_pool_t                       *pool;
    ngx_queue_t                      *q;
    const char                      **keys, **args;
    size_t                           *klen, *alen;
    ngx_http_llmroute_remote_t       *rm;
    ngx_http_llmroute_redis_item_t   *it;
    ngx_http_llmroute_main_conf_t    *lmcf;
    ngx_http_llmroute_client_node_t  *cn;
    ngx_http_llmroute_provider_stats_t  *ps;

    lmcf = rd->lmcf;
    now = ngx_time();

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    /* providers, and clients used here in the last two minutes */

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    max = lmcf->cat.nproviders;

    for (q = ngx_queue_head(&lmcf->sh->lru);
         q != ngx_queue_sentinel(&lmcf->sh->lru);
         q = ngx_queue_next(q))
    {
        cn = ngx_queue_data(q, ngx_http_llmroute_client_node_t, queue);

        if (now - cn->remote.last > 120 || max >= 4096) {
            break;
        }

        max++;
    }

    it = ngx_pcalloc(pool, max * sizeof(ngx_http_llmroute_redis_item_t));
    keys = ngx_palloc(pool, (1 + max * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM)
                            * sizeof(char *));
    klen = ngx_palloc(pool, (1 + max * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM)
                            * sizeof(size_t));
    args = ngx_palloc(pool, (4 + max * NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM)
                            * sizeof(char *));
    alen = ngx_palloc(pool, (4 + max * NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM)
                            * sizeof(size_t));

    if (it == NULL || keys == NULL || klen == NULL || args == NULL
        || alen == NULL)
    {
        ngx_shmtx_unlock(&lmcf->shpool->mutex);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    n = 0;
    q = ngx_queue_head(&lmcf->sh->lru);

    for (i = 0; i < max; i++) {

        if (i < lmcf->cat.nproviders) {
            ps = ngx_http_llmroute_provider_stats_locked(lmcf, i);
            if (ps == NULL) {
                continue;
            }

            rm = &ps->remote;
            it[n].name = lmcf->cat.providers[i].name;
            it[n].provider = i;

            it[n].period = 0;

        } else {
            if (q == ngx_queue_sentinel(&lmcf->sh->lru)) {
                break;
            }

            cn = ngx_queue_data(q, ngx_http_llmroute_client_node_t, queue);
            q = ngx_queue_next(q);

            rm = &cn->remote;
            ps = NULL;

            it[n].name.len = cn->len;
            it[n].name.data = ngx_pnalloc(pool, cn->len);
            if (it[n].name.data == NULL) {
                break;
            }

            ngx_memcpy(it[n].name.data, cn->data, cn->len);
            it[n].client = 1;
            it[n].period = cn->period;
        }

        /* keys: window, spend, this node's spend, cooldown */

        k = 1 + n * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM;
        a = 4 + n * NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM;

        p = ngx_pnalloc(pool, 5 * (rd->conf->prefix.len + it[n].name.len
                                   + rd->node.len + 2 * NGX_INT64_LEN + 16)
                              + 5 * NGX_INT64_LEN);
        if (p == NULL) {
            break;
        }

        keys[k] = (char *) p;
        p = ngx_sprintf(p, "%V%s:%V", &rd->conf->prefix,
                        it[n].client ? "c" : "p", &it[n].name);
        klen[k] = p - (u_char *) keys[k];

        keys[k + 1] = (char *) p;
        p = ngx_sprintf(p, "%Vs:%V:%ui", &rd->conf->prefix, &it[n].name,
                        it[n].period);
        klen[k + 1] = p - (u_char *) keys[k + 1];

        keys[k + 2] = (char *) p;
        p = ngx_sprintf(p, "%Vs:%V:%ui:%V", &rd->conf->prefix, &it[n].name,
                        it[n].period, &rd->node);
        klen[k + 2] = p - (u_char *) keys[k + 2];

        keys[k + 3] = (char *) p;
        p = ngx_sprintf(p, "%Vcool:%s%V", &rd->conf->prefix,
                        it[n].client ? "client:" : "", &it[n].name);
        klen[k + 3] = p - (u_char *) keys[k + 3];

        keys[k + 4] = (char *) p;
        p = ngx_sprintf(p, "%Vdisabled:%s%V", &rd->conf->prefix,
                        it[n].client ? "client:" : "", &it[n].name);
        klen[k + 4] = p - (u_char *) keys[k + 4];

        args[a] = (char *) p;
        p = ngx_sprintf(p, "%s", it[n].client ? "c" : "p");
        alen[a] = 1;

        args[a + 1] = (char *) p;
        p = ngx_sprintf(p, "%L", rm->ud_req);
        alen[a + 1] = p - (u_char *) args[a + 1];

        args[a + 2] = (char *) p;
        p = ngx_sprintf(p, "%L", rm->ud_tok);
        alen[a + 2] = p - (u_char *) args[a + 2];

        args[a + 3] = (char *) p;
        p = ngx_sprintf(p, "%L", it[n].client ? rm->ud_spend : 0);
        alen[a + 3] = p - (u_char *) args[a + 3];

        args[a + 4] = (char *) p;
        p = ngx_sprintf(p, "%uL", ps ? ps->cooldown_until : 0);
        alen[a + 4] = p - (u_char *) args[a + 4];

        rm->ud_req = 0;
        rm->ud_tok = 0;
        rm->ud_spend = 0;

        n++;
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    rd->seq++;

    p = ngx_pnalloc(pool, rd->conf->prefix.len + rd->node.len
                          + 4 * NGX_INT64_LEN + 16);
    if (p == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    keys[0] = (char *) p;
    p = ngx_sprintf(p, "%Vseq:%V:%P", &rd->conf->prefix, &rd->node, ngx_pid);
    klen[0] = p - (u_char *) keys[0];

    args[0] = (char *) p;
    p = ngx_sprintf(p, "%uL", rd->seq);
    alen[0] = p - (u_char *) args[0];

    args[1] = (char *) p;
    p = ngx_sprintf(p, "%T", now);
    alen[1] = p - (u_char *) args[1];

    args[2] = (char *) p;
    p = ngx_sprintf(p, "%uL", (uint64_t) now * 1000);
    alen[2] = p - (u_char *) args[2];

    args[3] = (char *) rd->node.data;
    alen[3] = rd->node.len;

    /* EVAL script numkeys keys... args... */

    rd->argc = 3 + (1 + n * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM)
               + 4 + n * NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM;

    rd->argv = ngx_palloc(pool, rd->argc * sizeof(char *));
    rd->argvlen = ngx_palloc(pool, rd->argc * sizeof(size_t));
    p = ngx_pnalloc(pool, NGX_INT_T_LEN);

    if (rd->argv == NULL || rd->argvlen == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    rd->argv[0] = "EVAL";
    rd->argvlen[0] = 4;
    rd->argv[1] = ngx_http_llmroute_redis_script;
    rd->argvlen[1] = sizeof(ngx_http_llmroute_redis_script) - 1;
    rd->argv[2] = (char *) p;
    rd->argvlen[2] = ngx_sprintf(p, "%ui",
                                 1 + n * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM)
                     - p;

    a = 3;

    for (i = 0; i < 1 + n * NGX_HTTP_LLMROUTE_REDIS_KEYS_PER_ITEM; i++) {
        rd->argv[a] = keys[i];
        rd->argvlen[a++] = klen[i];
    }

    for (i = 0; i < 4 + n * NGX_HTTP_LLMROUTE_REDIS_ARGS_PER_ITEM; i++) {
        rd->argv[a] = args[i];
        rd->argvlen[a++] = alen[i];
    }

    rd->pool = pool;
    rd->items = it;
    rd->nitems = n;

    return NGX_OK;
}


static void
ngx_http_llmroute_redis_send(ngx_http_llmroute_redis_t *rd)
{
    if (redisAsyncCommandArgv(rd->ac, ngx_http_llmroute_redis_reply, rd,
                              rd->argc, rd->argv, rd->argvlen)
        != REDIS_OK)
    {
        return;
    }

    rd->busy = 1;

    if (rd->timeout_ev.timer_set) {
        ngx_del_timer(&rd->timeout_ev);
    }

    ngx_add_timer(&rd->timeout_ev, rd->conf->timeout);
}


/* the batch is applied: take the other nodes' counts into the zone */

static void
ngx_http_llmroute_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                          *reply = r;

    time_t                               now;
    ngx_uint_t                           i;
    uint64_t                             cool;
    redisReply                         **e;
    ngx_http_llmroute_redis_t           *rd;
    ngx_http_llmroute_remote_t          *rm;
    ngx_http_llmroute_main_conf_t       *lmcf;
    ngx_http_llmroute_client_node_t     *cn;
    ngx_http_llmroute_provider_stats_t  *ps;

    rd = privdata;

    if (rd == NULL || ac->data == NULL) {
        return;
    }

    rd->busy = 0;

    if (rd->timeout_ev.timer_set) {
        ngx_del_timer(&rd->timeout_ev);
    }

    if (reply == NULL) {
        return;                 /* disconnected: the batch is re-sent */
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != rd->nitems * NGX_HTTP_LLMROUTE_REDIS_REPLY_PER_ITEM)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "llmroute: redis sync failed: %*s",
                      reply->type == REDIS_REPLY_ERROR ? (size_t) reply->len
                                                       : 14,
                      reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected reply");
        return;                 /* kept, re-sent next time */
    }

    lmcf = rd->lmcf;
    now = ngx_time();

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    for (i = 0; i < rd->nitems; i++) {

        if (rd->items[i].client) {
            cn = ngx_http_llmroute_client_find(lmcf, &rd->items[i].name);
            if (cn == NULL) {
                continue;
            }

            rm = &cn->remote;
            ps = NULL;

        } else {
            ps = &lmcf->provider_series[rd->items[i].provider]->s.provider;
            rm = &ps->remote;
        }

        e = &reply->element[i * NGX_HTTP_LLMROUTE_REDIS_REPLY_PER_ITEM];

        rm->synced = 1;
        rm->req = ngx_http_llmroute_redis_int(e[0]);
        rm->tok = ngx_http_llmroute_redis_int(e[1]);
        rm->spend = ngx_http_llmroute_redis_int(e[2]);
        rm->period = rd->items[i].period;

        cool = (uint64_t) ngx_http_llmroute_redis_int(e[3]);

        if (ps) {
            /* an operator's "disabled" key takes the provider out */
            ps->disabled = ngx_http_llmroute_redis_int(e[4]) ? 1 : 0;
        }

        if (ps && cool > ps->cooldown_until
            && cool > (uint64_t) now * 1000)
        {
            ps->cooldown_until = cool;
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    ngx_destroy_pool(rd->pool);
    rd->pool = NULL;
}


static void
ngx_http_llmroute_redis_ignore(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "llmroute: redis: %*s", (size_t) reply->len, reply->str);
    }
}


static int64_t
ngx_http_llmroute_redis_int(redisReply *r)
{
    return r->type == REDIS_REPLY_INTEGER ? (int64_t) r->integer : 0;
}


/*
 * The adapter: hiredis's socket on an nginx connection, level-triggered
 * events (hiredis reads a bounded amount per call), no fd closed by us.
 */

static ngx_int_t
ngx_http_llmroute_redis_attach(ngx_http_llmroute_redis_t *rd)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(rd->ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = rd;
    c->read->handler = ngx_http_llmroute_redis_read_handler;
    c->write->handler = ngx_http_llmroute_redis_write_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    rd->conn = c;

    rd->ac->ev.data = rd;
    rd->ac->ev.addRead = ngx_http_llmroute_redis_add_read;
    rd->ac->ev.delRead = ngx_http_llmroute_redis_del_read;
    rd->ac->ev.addWrite = ngx_http_llmroute_redis_add_write;
    rd->ac->ev.delWrite = ngx_http_llmroute_redis_del_write;
    rd->ac->ev.cleanup = ngx_http_llmroute_redis_cleanup;

    return NGX_OK;
}


static void
ngx_http_llmroute_redis_add_read(void *privdata)
{
    ngx_http_llmroute_redis_t  *rd = privdata;

    if (rd->conn && !rd->conn->read->active) {
        (void) ngx_add_event(rd->conn->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_llmroute_redis_del_read(void *privdata)
{
    ngx_http_llmroute_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->read->active) {
        (void) ngx_del_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_llmroute_redis_add_write(void *privdata)
{
    ngx_http_llmroute_redis_t  *rd = privdata;

    if (rd->conn && !rd->conn->write->active) {
        (void) ngx_add_event(rd->conn->write, NGX_WRITE_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_llmroute_redis_del_write(void *privdata)
{
    ngx_http_llmroute_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->write->active) {
        (void) ngx_del_event(rd->conn->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis frees the context and closes the fd: we only let go of ours */

static void
ngx_http_llmroute_redis_cleanup(void *privdata)
{
    ngx_connection_t           *c;
    ngx_http_llmroute_redis_t  *rd = privdata;

    c = rd->conn;

    if (c == NULL) {
        return;
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    rd->conn = NULL;
}


static void
ngx_http_llmroute_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_llmroute_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    if (rd->ac) {
        redisAsyncHandleRead(rd->ac);
    }
}


static void
ngx_http_llmroute_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_llmroute_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    if (rd->ac) {
        redisAsyncHandleWrite(rd->ac);
    }
}


/*
 * Live prices: "llmroute-catalog publish" bumps {llmroute}:prices:version;
 * when it moves, the configured models' price hashes are read into the
 * zone, and every worker copies them into its catalog before its next
 * decision.  A price for a model nginx does not know is never read.
 */

static void
ngx_http_llmroute_redis_prices(ngx_http_llmroute_redis_t *rd)
{
    u_char  key[256];
    size_t  len;

    if (rd->pricing) {
        return;
    }

    len = ngx_snprintf(key, sizeof(key), "%Vprices:version",
                       &rd->conf->prefix) - key;

    if (redisAsyncCommand(rd->ac, ngx_http_llmroute_redis_version, rd,
                          "GET %b", key, len)
        == REDIS_OK)
    {
        rd->pricing = 1;
    }
}


static void
ngx_http_llmroute_redis_version(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *reply = r;

    u_char                          key[512];
    size_t                          len;
    int64_t                         v;
    ngx_str_t                       s;
    ngx_uint_t                      i, same;
    ngx_http_llmroute_model_t      *m;
    ngx_http_llmroute_redis_t      *rd;
    ngx_http_llmroute_main_conf_t  *lmcf;

    rd = privdata;

    if (rd == NULL || ac->data == NULL) {
        return;
    }

    rd->pricing = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        return;
    }

    s.data = (u_char *) reply->str;
    s.len = reply->len;
    v = ngx_atoi(s.data, s.len);

    if (v == NGX_ERROR) {
        return;
    }

    /*
     * the version read is kept in the zone: the sync worker of a new
     * cycle does not read the prices again, so a price a reload edited
     * stays until the version moves
     */

    lmcf = rd->lmcf;

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    same = (lmcf->sh->redis_prices == v);
    lmcf->sh->redis_prices = v;
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    if (same) {
        return;
    }

    m = lmcf->cat.models;

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        len = ngx_snprintf(key, sizeof(key), "%Vprice:%V", &rd->conf->prefix,
                           &m[i].full) - key;

        if (redisAsyncCommand(ac, ngx_http_llmroute_redis_price,
                              (void *) (uintptr_t) (i + 1),
                              "HMGET %b input output cached_input cache_write",
                              key, len)
            == REDIS_OK)
        {
            rd->pricing++;
        }
    }
}


static void
ngx_http_llmroute_redis_price(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                       *reply = r;

    uint64_t                          price[NGX_HTTP_LLMROUTE_PRICES];
    uint64_t                         *conf;
    ngx_str_t                         s;
    ngx_uint_t                        i, k;
    ngx_http_llmroute_redis_t        *rd;
    ngx_http_llmroute_model_stats_t  *ms;
    ngx_http_llmroute_main_conf_t    *lmcf;

    rd = ac->data;

    if (rd == NULL) {
        return;
    }

    i = (uintptr_t) privdata - 1;
    lmcf = rd->lmcf;

    if (rd->pricing) {
        rd->pricing--;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != NGX_HTTP_LLMROUTE_PRICES)
    {
        return;
    }

    conf = &lmcf->conf_prices[i * NGX_HTTP_LLMROUTE_PRICES];

    for (k = 0; k < NGX_HTTP_LLMROUTE_PRICES; k++) {
        if (reply->element[k]->type != REDIS_REPLY_STRING) {

            if (k == 3 && reply->element[k]->type == REDIS_REPLY_NIL) {
                /*
                 * cache_write is optional: it keeps the configured
                 * ratio to input (1.25 x by default), so a live input
                 * price moves the cache-write price with it
                 */
                if (conf[0] == 0
                    || __builtin_mul_overflow(conf[3], price[0], &price[3]))
                {
                    price[3] = conf[3];

                } else {
                    price[3] /= conf[0];
                }

                break;
            }

            return;             /* no (complete) price: keep the config's */
        }

        s.data = (u_char *) reply->element[k]->str;
        s.len = reply->element[k]->len;

        if (ngx_http_llmroute_parse_price(&s, &price[k]) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "llmroute: invalid price \"%V\" in redis for "
                          "\"%V\"", &s, &lmcf->cat.models[i].full);
            return;
        }
    }

    ms = ngx_http_llmroute_model_stats(lmcf, i);
    if (ms == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    ngx_memcpy(ms->price, price, sizeof(price));
    ngx_memcpy(ms->config, conf, sizeof(ms->config));
    ms->priced = 1;

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    (void) ngx_atomic_fetch_add(&lmcf->sh->prices, 1);
}


/* this worker's catalog takes the zone's live prices */

void
ngx_http_llmroute_prices_refresh(ngx_http_llmroute_main_conf_t *lmcf)
{
    uint64_t                         *conf;
    ngx_uint_t                        i, live;
    ngx_http_llmroute_model_t        *m;
    ngx_http_llmroute_model_stats_t  *ms;

    lmcf->prices = lmcf->sh->prices;

    for (i = 0; i < lmcf->cat.nmodels; i++) {
        ms = ngx_http_llmroute_model_stats(lmcf, i);

        if (ms == NULL || !ms->priced) {
            continue;
        }

        m = &lmcf->cat.models[i];
        conf = &lmcf->conf_prices[i * NGX_HTTP_LLMROUTE_PRICES];

        ngx_shmtx_lock(&lmcf->shpool->mutex);

        /* read over another configured price: the configuration wins */

        live = (ngx_memcmp(ms->config, conf, sizeof(ms->config)) == 0);

        m->input = live ? ms->price[0] : conf[0];
        m->output = live ? ms->price[1] : conf[1];
        m->cached_input = live ? ms->price[2] : conf[2];
        m->cache_write = live ? ms->price[3] : conf[3];

        ngx_shmtx_unlock(&lmcf->shpool->mutex);
    }
}


/*
 * Where sessions' caches are, both ways: this node's answers since the
 * last push go up, every node's since the last pull come back (one sync
 * interval behind at most).  One exchange in flight at a time.
 */

#define NGX_HTTP_LLMROUTE_REDIS_SESSIONS  1024

static void
ngx_http_llmroute_redis_sessions(ngx_http_llmroute_redis_t *rd)
{
    u_char       *p;
    size_t       *argvlen;
    uint64_t      now;
    ngx_str_t    *pairs;
    ngx_uint_t    i, n;
    ngx_pool_t   *pool;
    ngx_time_t   *tp;
    const char  **argv;

    if (rd->sessions_pool || rd->lmcf->sh == NULL) {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    pairs = ngx_palloc(pool, 2 * NGX_HTTP_LLMROUTE_REDIS_SESSIONS
                             * sizeof(ngx_str_t));
    argv = ngx_palloc(pool, (7 + 2 * NGX_HTTP_LLMROUTE_REDIS_SESSIONS)
                            * sizeof(char *));
    argvlen = ngx_palloc(pool, (7 + 2 * NGX_HTTP_LLMROUTE_REDIS_SESSIONS)
                               * sizeof(size_t));
    p = ngx_pnalloc(pool, 2 * rd->conf->prefix.len + 32 + 3 * NGX_INT64_LEN);

    if (pairs == NULL || argv == NULL || argvlen == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    n = ngx_http_llmroute_session_changed(rd->lmcf, pool, pairs,
                                          NGX_HTTP_LLMROUTE_REDIS_SESSIONS);

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;

    argv[0] = "EVAL";
    argv[1] = ngx_http_llmroute_redis_sessions_script;
    argv[2] = "2";

    argv[3] = (char *) p;
    p = ngx_sprintf(p, "%Vsessions:index", &rd->conf->prefix);
    argvlen[3] = p - (u_char *) argv[3];

    argv[4] = (char *) p;
    p = ngx_sprintf(p, "%Vsessions", &rd->conf->prefix);
    argvlen[4] = p - (u_char *) argv[4];

    argv[5] = (char *) p;
    p = ngx_sprintf(p, "%uL", now);
    argvlen[5] = p - (u_char *) argv[5];

    argv[6] = (char *) p;
    p = ngx_sprintf(p, "%uL", rd->sessions_since);
    argvlen[6] = p - (u_char *) argv[6];

    argvlen[0] = 4;
    argvlen[1] = sizeof(ngx_http_llmroute_redis_sessions_script) - 1;
    argvlen[2] = 1;

    for (i = 0; i < 2 * n; i++) {
        argv[7 + i] = (char *) pairs[i].data;
        argvlen[7 + i] = pairs[i].len;
    }

    if (redisAsyncCommandArgv(rd->ac, ngx_http_llmroute_redis_sessions_reply,
                              rd, 7 + 2 * n, argv, argvlen)
        != REDIS_OK)
    {
        ngx_http_llmroute_session_unpushed(rd->lmcf, pairs, n);
        ngx_destroy_pool(pool);
        return;
    }

    rd->sessions_pool = pool;
    rd->sessions_pairs = pairs;
    rd->sessions_n = n;
    rd->sessions_sent = now;
}


static void
ngx_http_llmroute_redis_sessions_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply  *reply = r;

    ngx_str_t                   hex, value;
    ngx_uint_t                  i;
    ngx_http_llmroute_redis_t  *rd;

    rd = privdata;

    /*
     * the exchange is over even on a dropped connection (hiredis calls
     * this with no reply while freeing the context, before any new one);
     * its sessions, unless Redis took them, go in the next push
     */

    if (rd && rd->sessions_pool) {
        if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
            ngx_http_llmroute_session_unpushed(rd->lmcf, rd->sessions_pairs,
                                               rd->sessions_n);
        }

        ngx_destroy_pool(rd->sessions_pool);
        rd->sessions_pool = NULL;
    }

    if (rd == NULL || ac->data == NULL || reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_llmroute_redis_ignore(ac, r, NULL);
        return;
    }

    /* the next pull: a little before this one, pushes cross in flight */

    rd->sessions_since = rd->sessions_sent - 2 * rd->conf->sync - 1000;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        hex.data = (u_char *) reply->element[i]->str;
        hex.len = reply->element[i]->len;
        value.data = (u_char *) reply->element[i + 1]->str;
        value.len = reply->element[i + 1]->len;

        ngx_http_llmroute_session_learn(rd->lmcf, &hex, &value);
    }
}
