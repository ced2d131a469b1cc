/*
 * llmroute-catalog: live prices and provider health in Redis, synchronous
 * hiredis (this process is not nginx).  Key schema: docs/redis-keys.md.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "llmroute_catalog.h"


#define LC_MAX_ARGS  32


typedef struct {
    int          argc;
    const char  *argv[LC_MAX_ARGS];
    size_t       argvlen[LC_MAX_ARGS];
    char         store[LC_MAX_ARGS][512];
} lc_cmd_t;


static void lc_cmd_init(lc_cmd_t *cmd);
static void lc_cmd_add(lc_cmd_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int lc_redis_reply_ok(redisReply *r, const char *what);
static int lc_redis_run(redisContext *c, lc_cmd_t *cmds, int n);


static void
lc_cmd_init(lc_cmd_t *cmd)
{
    cmd->argc = 0;
}


static void
lc_cmd_add(lc_cmd_t *cmd, const char *fmt, ...)
{
    va_list  ap;
    int      n;

    if (cmd->argc == LC_MAX_ARGS) {
        return;
    }

    va_start(ap, fmt);
    n = vsnprintf(cmd->store[cmd->argc], sizeof(cmd->store[0]), fmt, ap);
    va_end(ap);

    if (n < 0) {
        n = 0;
    }

    if ((size_t) n >= sizeof(cmd->store[0])) {
        n = sizeof(cmd->store[0]) - 1;
    }

    cmd->argv[cmd->argc] = cmd->store[cmd->argc];
    cmd->argvlen[cmd->argc] = (size_t) n;
    cmd->argc++;
}


int
lc_redis_connect(const char *addr, const char *password_env, lc_redis_t **out)
{
    int              port;
    char             host[256], *colon, *end;
    const char      *pw;
    redisReply      *r;
    redisContext    *c;
    struct timeval   tv = { 5, 0 };

    if (strncmp(addr, "unix:", 5) == 0) {
        c = redisConnectUnixWithTimeout(addr + 5, tv);

    } else {
        if (strlen(addr) >= sizeof(host)) {
            lc_err("invalid Redis address \"%s\"", addr);
            return LC_EUSAGE;
        }

        strcpy(host, addr);
        colon = strrchr(host, ':');
        port = 6379;

        if (colon) {
            *colon = '\0';
            port = (int) strtol(colon + 1, &end, 10);

            if (*end != '\0' || port <= 0 || port > 65535) {
                lc_err("invalid Redis address \"%s\", HOST:PORT expected",
                       addr);
                return LC_EUSAGE;
            }
        }

        c = redisConnectWithTimeout(host, port, tv);
    }

    if (c == NULL || c->err) {
        lc_err("Redis %s: cannot connect: %s", addr,
               c ? c->errstr : "out of memory");
        if (c) {
            redisFree(c);
        }

        return LC_EREDIS;
    }

    redisSetTimeout(c, tv);

    if (password_env) {
        pw = getenv(password_env);

        if (pw == NULL || *pw == '\0') {
            lc_err("Redis password variable %s is not set", password_env);
            redisFree(c);
            return LC_EREDIS;
        }

        r = redisCommand(c, "AUTH %s", pw);

        if (lc_redis_reply_ok(r, "AUTH") != 0) {
            redisFree(c);
            return LC_EREDIS;
        }
    }

    *out = c;

    return LC_OK;
}


void
lc_redis_free(lc_redis_t *c)
{
    if (c) {
        redisFree(c);
    }
}


static int
lc_redis_reply_ok(redisReply *r, const char *what)
{
    size_t  i;
    int     rc;

    if (r == NULL) {
        lc_err("Redis %s: connection lost or timed out", what);
        return -1;
    }

    rc = 0;

    if (r->type == REDIS_REPLY_ERROR) {
        lc_err("Redis %s: %s", what, r->str);
        rc = -1;

    } else if (r->type == REDIS_REPLY_NIL && strcmp(what, "EXEC") == 0) {
        lc_err("Redis EXEC: transaction aborted");
        rc = -1;

    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_ERROR) {
                lc_err("Redis %s: %s", what, r->element[i]->str);
                rc = -1;
            }
        }
    }

    freeReplyObject(r);

    return rc;
}


/* MULTI, the commands, EXEC: all keys share one hash tag (one slot) */

static int
lc_redis_run(redisContext *c, lc_cmd_t *cmds, int n)
{
    int    i, j, rc;
    void  *reply;

    redisAppendCommand(c, "MULTI");

    for (i = 0; i < n; i++) {
        /* argv points into the command itself, which may have moved */
        for (j = 0; j < cmds[i].argc; j++) {
            cmds[i].argv[j] = cmds[i].store[j];
        }

        redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv,
                               cmds[i].argvlen);
    }

    redisAppendCommand(c, "EXEC");
    rc = LC_OK;

    for (i = 0; i < n + 2; i++) {
        reply = NULL;

        if (redisGetReply(c, &reply) != REDIS_OK) {
            lc_err("Redis: %s", c->errstr[0] ? c->errstr : "no reply");
            return LC_EREDIS;
        }

        if (lc_redis_reply_ok(reply, i == 0 ? "MULTI"
                                     : i == n + 1 ? "EXEC" : "command")
            != 0)
        {
            rc = LC_EREDIS;
        }
    }

    return rc;
}


int
lc_redis_publish_prices(lc_redis_t *c, const char *prefix,
    const lc_map_t *map, const char *source)
{
    int                rc, n;
    char               in[32], o[32], ca[32], key[600];
    size_t             i, k, extra;
    time_t             now;
    lc_cmd_t          *cmds, *gone;
    redisReply        *old;
    const lc_entry_t  *e;

    extra = 0;

    now = time(NULL);
    cmds = calloc(map->n * 2 + 4, sizeof(lc_cmd_t));
    if (cmds == NULL) {
        lc_err("out of memory");
        return LC_EREDIS;
    }

    n = 0;
    lc_cmd_init(&cmds[n]);
    lc_cmd_add(&cmds[n], "DEL");
    lc_cmd_add(&cmds[n++], "%sprices", prefix);

    /* hashes of models no longer in the catalog go in the same EXEC */
    old = redisCommand(c, "SMEMBERS %sprices", prefix);

    if (old && old->type == REDIS_REPLY_ARRAY) {
        for (k = 0; k < old->elements; k++) {
            for (i = 0; i < map->n; i++) {
                e = &map->entries[i];
                snprintf(key, sizeof(key), "%s/%s", e->provider, e->model);

                if (e->found && strcmp(key, old->element[k]->str) == 0) {
                    break;
                }
            }

            if (i == map->n) {
                gone = realloc(cmds, (map->n * 2 + 5 + ++extra)
                                     * sizeof(lc_cmd_t));
                if (gone == NULL) {
                    break;
                }

                cmds = gone;
                lc_cmd_init(&cmds[n]);
                lc_cmd_add(&cmds[n], "DEL");
                lc_cmd_add(&cmds[n++], "%sprice:%s", prefix,
                           old->element[k]->str);
            }
        }
    }

    if (old == NULL) {
        lc_err("Redis SMEMBERS: %s", c->errstr[0] ? c->errstr : "no reply");
        free(cmds);
        return LC_EREDIS;
    }

    freeReplyObject(old);

    for (i = 0; i < map->n; i++) {
        e = &map->entries[i];

        if (!e->found) {
            continue;
        }

        lc_format_price(e->input, in, sizeof(in));
        lc_format_price(e->output, o, sizeof(o));
        lc_format_price(e->cached == LC_PRICE_UNSET ? e->input : e->cached,
                        ca, sizeof(ca));

        lc_cmd_init(&cmds[n]);
        lc_cmd_add(&cmds[n], "HSET");
        lc_cmd_add(&cmds[n], "%sprice:%s/%s", prefix, e->provider, e->model);
        lc_cmd_add(&cmds[n], "input");
        lc_cmd_add(&cmds[n], "%s", in);
        lc_cmd_add(&cmds[n], "output");
        lc_cmd_add(&cmds[n], "%s", o);
        lc_cmd_add(&cmds[n], "cached_input");
        lc_cmd_add(&cmds[n], "%s", ca);
        lc_cmd_add(&cmds[n], "context");
        lc_cmd_add(&cmds[n], "%llu", (unsigned long long) e->context);
        lc_cmd_add(&cmds[n], "tier");
        lc_cmd_add(&cmds[n], "%s", e->tier);
        lc_cmd_add(&cmds[n], "source");
        lc_cmd_add(&cmds[n], "%s", e->source_id ? e->source_id : "static");
        lc_cmd_add(&cmds[n], "updated_at");
        lc_cmd_add(&cmds[n++], "%lld", (long long) now);

        lc_cmd_init(&cmds[n]);
        lc_cmd_add(&cmds[n], "SADD");
        lc_cmd_add(&cmds[n], "%sprices", prefix);
        lc_cmd_add(&cmds[n++], "%s/%s", e->provider, e->model);
    }

    lc_cmd_init(&cmds[n]);
    lc_cmd_add(&cmds[n], "HSET");
    lc_cmd_add(&cmds[n], "%sprices:meta", prefix);
    lc_cmd_add(&cmds[n], "updated_at");
    lc_cmd_add(&cmds[n], "%lld", (long long) now);
    lc_cmd_add(&cmds[n], "source");
    lc_cmd_add(&cmds[n++], "%s", source);

    /* readers poll this one key and reload the hashes when it changes */
    lc_cmd_init(&cmds[n]);
    lc_cmd_add(&cmds[n], "INCR");
    lc_cmd_add(&cmds[n++], "%sprices:version", prefix);

    rc = lc_redis_run(c, cmds, n);
    free(cmds);

    return rc;
}


int
lc_redis_publish_health(lc_redis_t *c, const char *prefix,
    const char *provider, const char *state, long http_code,
    long latency_ms, const char *error, long ttl)
{
    lc_cmd_t  cmds[2];

    lc_cmd_init(&cmds[0]);
    lc_cmd_add(&cmds[0], "HSET");
    lc_cmd_add(&cmds[0], "%shealth:%s", prefix, provider);
    lc_cmd_add(&cmds[0], "state");
    lc_cmd_add(&cmds[0], "%s", state);
    lc_cmd_add(&cmds[0], "http_code");
    lc_cmd_add(&cmds[0], "%ld", http_code);
    lc_cmd_add(&cmds[0], "latency_ms");
    lc_cmd_add(&cmds[0], "%ld", latency_ms);
    lc_cmd_add(&cmds[0], "error");
    lc_cmd_add(&cmds[0], "%s", error ? error : "");
    lc_cmd_add(&cmds[0], "checked_at");
    lc_cmd_add(&cmds[0], "%lld", (long long) time(NULL));

    lc_cmd_init(&cmds[1]);
    lc_cmd_add(&cmds[1], "EXPIRE");
    lc_cmd_add(&cmds[1], "%shealth:%s", prefix, provider);
    lc_cmd_add(&cmds[1], "%ld", ttl);

    return lc_redis_run(c, cmds, 2);
}
