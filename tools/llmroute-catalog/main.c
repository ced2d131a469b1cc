/*
 * llmroute-catalog: price and health feed for ngx_http_llmroute_module.
 *
 *   llmroute-catalog fetch   --source URL|FILE --map MAPFILE --out FILE
 *                            [--nginx-test CMD] [--reload CMD] [--force]
 *   llmroute-catalog publish --source URL|FILE --map MAPFILE
 *                            --redis HOST:PORT [--prefix P]
 *   llmroute-catalog probe   --config FILE [--redis HOST:PORT] [--prefix P]
 *   llmroute-catalog reprice --old CATALOG --new CATALOG --log FILE
 *                            [--max-increase PCT%] [--json]
 *
 * See tools/llmroute-catalog/README.md for the options and exit codes.
 */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include "llmroute_catalog.h"


#define LC_DEFAULT_PREFIX  "{llmroute}:"


typedef struct {
    const char      *cmd;
    const char      *source;
    const char      *map;
    const char      *out;
    const char      *nginx_test;
    const char      *reload;
    const char      *redis;
    const char      *prefix;
    const char      *password_env;
    const char      *config;
    int              force;
    int              allow_missing;
    long             ttl;
    lc_http_opts_t   http;
} lc_args_t;


static void lc_usage(FILE *f);
static int lc_parse_seconds(const char *s, long *ms);
static int lc_args(int argc, char **argv, lc_args_t *a);
static int lc_write_atomic(const char *path, const char *data, size_t len);
static int lc_run(const char *what, const char *cmd);
static int lc_load_catalog(lc_args_t *a, lc_map_t *map);
static int lc_cmd_fetch(lc_args_t *a);
static int lc_cmd_publish(lc_args_t *a);


static void
lc_usage(FILE *f)
{
    fputs(
"usage: llmroute-catalog fetch --source URL|FILE --map MAPFILE --out FILE\n"
"                              [--nginx-test CMD] [--reload CMD] [--force]\n"
"                              [--allow-missing]\n"
"       llmroute-catalog publish --source URL|FILE --map MAPFILE\n"
"                              --redis HOST:PORT|unix:PATH [--prefix P]\n"
"       llmroute-catalog probe --config FILE [--redis HOST:PORT]\n"
"                              [--prefix P] [--ttl SEC]\n"
"       llmroute-catalog reprice --old CATALOG --new CATALOG --log FILE\n"
"                              [--max-increase PCT%] [--json] [--list N]\n"
"common: --timeout SEC (30; probe 10) --connect-timeout SEC (10)\n"
"        --cacert FILE --redis-password-env VAR\n"
"exit codes: 0 ok, 1 usage, 2 map, 3 source/connect, 4 timeout, 5 TLS,\n"
"        6 HTTP status, 7 malformed JSON, 8 model missing/bad price,\n"
"        9 write, 10 nginx -t failed (old file restored), 11 reload,\n"
"        12 Redis, 13 probe: endpoint not healthy\n", f);
}


static int
lc_parse_seconds(const char *s, long *ms)
{
    char    *end;
    double   v;

    errno = 0;
    v = strtod(s, &end);

    if (errno || *end != '\0' || !(v > 0) || v > 86400) {
        return -1;
    }

    *ms = (long) (v * 1000 + 0.5);

    return 0;
}


static int
lc_args(int argc, char **argv, lc_args_t *a)
{
    int          i, have_timeout;
    const char  *o, *v;

    memset(a, 0, sizeof(*a));
    a->http.timeout_ms = 30000;
    a->http.connect_timeout_ms = 10000;
    a->prefix = LC_DEFAULT_PREFIX;
    a->ttl = 120;
    have_timeout = 0;

    if (argc < 2) {
        lc_usage(stderr);
        return LC_EUSAGE;
    }

    a->cmd = argv[1];

    if (strcmp(a->cmd, "-h") == 0 || strcmp(a->cmd, "--help") == 0) {
        lc_usage(stdout);
        exit(LC_OK);
    }

    for (i = 2; i < argc; i++) {
        o = argv[i];

        if (strcmp(o, "--force") == 0) {
            a->force = 1;
            continue;
        }

        if (strcmp(o, "--allow-missing") == 0) {
            a->allow_missing = 1;
            continue;
        }

        if (strcmp(o, "--insecure") == 0) {
            a->http.insecure = 1;
            continue;
        }

        if (i + 1 == argc) {
            lc_err("option %s needs a value", o);
            return LC_EUSAGE;
        }

        v = argv[++i];

        if (strcmp(o, "--source") == 0) {
            a->source = v;

        } else if (strcmp(o, "--map") == 0) {
            a->map = v;

        } else if (strcmp(o, "--out") == 0) {
            a->out = v;

        } else if (strcmp(o, "--nginx-test") == 0) {
            a->nginx_test = v;

        } else if (strcmp(o, "--reload") == 0) {
            a->reload = v;

        } else if (strcmp(o, "--redis") == 0) {
            a->redis = v;

        } else if (strcmp(o, "--prefix") == 0) {
            a->prefix = v;

        } else if (strcmp(o, "--redis-password-env") == 0) {
            a->password_env = v;

        } else if (strcmp(o, "--config") == 0) {
            a->config = v;

        } else if (strcmp(o, "--cacert") == 0) {
            a->http.cacert = v;

        } else if (strcmp(o, "--timeout") == 0) {
            if (lc_parse_seconds(v, &a->http.timeout_ms) != 0) {
                goto invalid;
            }

            have_timeout = 1;

        } else if (strcmp(o, "--connect-timeout") == 0) {
            if (lc_parse_seconds(v, &a->http.connect_timeout_ms) != 0) {
                goto invalid;
            }

        } else if (strcmp(o, "--ttl") == 0) {
            a->ttl = strtol(v, NULL, 10);
            if (a->ttl <= 0) {
                goto invalid;
            }

        } else {
            lc_err("unknown option %s", o);
            lc_usage(stderr);
            return LC_EUSAGE;
        }

        continue;

    invalid:

        lc_err("invalid value \"%s\" for %s", v, o);
        return LC_EUSAGE;
    }

    if (strcmp(a->cmd, "probe") == 0 && !have_timeout) {
        a->http.timeout_ms = 10000;
    }

    if (a->http.connect_timeout_ms > a->http.timeout_ms) {
        a->http.connect_timeout_ms = a->http.timeout_ms;
    }

    if (a->redis && strchr(a->prefix, '{') == NULL) {
        lc_warn("prefix \"%s\" has no {hash tag}: on Redis Cluster the "
                "keys would not share a slot", a->prefix);
    }

    return LC_OK;
}


/*
 * Temp file in the same directory, fsync, rename over the target, fsync
 * the directory: readers see the old file or the new one, never a part.
 */

static int
lc_write_atomic(const char *path, const char *data, size_t len)
{
    int      fd, dfd;
    char    *dup, *dir, tmp[4096];
    size_t   off;
    ssize_t  n;

    dup = strdup(path);
    if (dup == NULL) {
        return LC_EWRITE;
    }

    dir = dirname(dup);

    if ((size_t) snprintf(tmp, sizeof(tmp), "%s/.llmroute-catalog.XXXXXX",
                          dir)
        >= sizeof(tmp))
    {
        free(dup);
        lc_err("output path too long");
        return LC_EWRITE;
    }

    fd = mkstemp(tmp);
    if (fd == -1) {
        lc_err("cannot create a temporary file in %s: %s", dir,
               strerror(errno));
        free(dup);
        return LC_EWRITE;
    }

    for (off = 0; off < len; off += (size_t) n) {
        n = write(fd, data + off, len - off);

        if (n <= 0) {
            if (n == -1 && errno == EINTR) {
                n = 0;
                continue;
            }

            lc_err("write %s: %s", tmp, strerror(errno));
            goto failed;
        }
    }

    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        lc_err("fsync %s: %s", tmp, strerror(errno));
        goto failed;
    }

    if (close(fd) != 0) {
        fd = -1;
        lc_err("close %s: %s", tmp, strerror(errno));
        goto failed;
    }

    fd = -1;

    if (rename(tmp, path) != 0) {
        lc_err("rename %s -> %s: %s", tmp, path, strerror(errno));
        goto failed;
    }

    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd != -1) {
        fsync(dfd);
        close(dfd);
    }

    free(dup);

    return LC_OK;

failed:

    if (fd != -1) {
        close(fd);
    }

    unlink(tmp);
    free(dup);

    return LC_EWRITE;
}


static int
lc_run(const char *what, const char *cmd)
{
    int  st;

    fflush(stdout);
    st = system(cmd);

    if (st == -1) {
        lc_err("%s: cannot run \"%s\": %s", what, cmd, strerror(errno));
        return -1;
    }

    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        lc_err("%s: \"%s\" failed (status %d)", what, cmd,
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -1;
    }

    return 0;
}


static int
lc_load_catalog(lc_args_t *a, lc_map_t *map)
{
    int     rc;
    char   *json;
    size_t  len;

    if (a->source == NULL || a->map == NULL) {
        lc_err("%s needs --source and --map", a->cmd);
        return LC_EUSAGE;
    }

    rc = lc_map_load(a->map, map);
    if (rc != LC_OK) {
        return rc;
    }

    rc = lc_fetch_source(a->source, &a->http, &json, &len);
    if (rc != LC_OK) {
        return rc;
    }

    if (strlen(json) != len) {
        lc_err("malformed JSON in the price list: NUL byte");
        free(json);
        return LC_EJSON;
    }

    rc = lc_map_resolve(map, json, a->allow_missing);
    free(json);

    return rc;
}


static int
lc_cmd_fetch(lc_args_t *a)
{
    int        rc, had_old;
    char      *text, *old;
    size_t     len, old_len;
    lc_map_t   map;

    if (a->out == NULL) {
        lc_err("fetch needs --out FILE");
        return LC_EUSAGE;
    }

    rc = lc_load_catalog(a, &map);
    if (rc != LC_OK) {
        lc_map_free(&map);
        lc_err("%s left unchanged", a->out);
        return rc;
    }

    rc = lc_render(&map, a->source, &text, &len);
    lc_map_free(&map);

    if (rc != LC_OK) {
        free(text);
        lc_err("%s left unchanged", a->out);
        return rc;
    }

    had_old = (lc_read_file(a->out, &old, &old_len) == 0);

    if (had_old && old_len == len && memcmp(old, text, len) == 0
        && !a->force)
    {
        printf("%s: unchanged\n", a->out);
        free(old);
        free(text);
        return LC_OK;
    }

    rc = lc_write_atomic(a->out, text, len);
    if (rc != LC_OK) {
        lc_err("%s left unchanged", a->out);
        goto done;
    }

    printf("%s: written\n", a->out);

    if (a->nginx_test && lc_run("nginx test", a->nginx_test) != 0) {
        rc = LC_ENGINX_TEST;

        if (had_old) {
            if (lc_write_atomic(a->out, old, old_len) == LC_OK) {
                lc_err("%s restored to its previous content", a->out);

            } else {
                lc_err("could not restore %s", a->out);
            }

        } else if (unlink(a->out) == 0) {
            lc_err("%s removed (there was no previous file)", a->out);
        }

        goto done;
    }

    if (a->reload && lc_run("reload", a->reload) != 0) {
        rc = LC_ERELOAD;
        goto done;
    }

    if (a->reload) {
        printf("reloaded\n");
    }

done:

    if (had_old) {
        free(old);
    }

    free(text);

    return rc;
}


static int
lc_cmd_publish(lc_args_t *a)
{
    int          rc;
    lc_map_t     map;
    lc_redis_t  *c;
    size_t       i, n;

    if (a->redis == NULL) {
        lc_err("publish needs --redis HOST:PORT");
        return LC_EUSAGE;
    }

    rc = lc_load_catalog(a, &map);
    if (rc != LC_OK) {
        lc_map_free(&map);
        lc_err("nothing published");
        return rc;
    }

    rc = lc_redis_connect(a->redis, a->password_env, &c);
    if (rc != LC_OK) {
        lc_map_free(&map);
        return rc;
    }

    rc = lc_redis_publish_prices(c, a->prefix, &map, a->source);

    for (i = 0, n = 0; i < map.n; i++) {
        n += map.entries[i].found;
    }

    if (rc == LC_OK) {
        printf("published %zu prices to %s (prefix %s)\n", n, a->redis,
               a->prefix);
    }

    lc_redis_free(c);
    lc_map_free(&map);

    return rc;
}


int
main(int argc, char **argv)
{
    int        rc;
    lc_args_t  a;

    /* offline, no network: its own options */
    if (argc > 1 && strcmp(argv[1], "reprice") == 0) {
        return lc_reprice(argc - 2, argv + 2);
    }

    rc = lc_args(argc, argv, &a);
    if (rc != LC_OK) {
        return rc;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lc_err("curl_global_init() failed");
        return LC_ESOURCE;
    }

    if (strcmp(a.cmd, "fetch") == 0) {
        rc = lc_cmd_fetch(&a);

    } else if (strcmp(a.cmd, "publish") == 0) {
        rc = lc_cmd_publish(&a);

    } else if (strcmp(a.cmd, "probe") == 0) {
        if (a.config == NULL) {
            lc_err("probe needs --config FILE");
            rc = LC_EUSAGE;

        } else {
            rc = lc_probe(a.config, &a.http, a.redis, a.prefix,
                          a.password_env, a.ttl);
        }

    } else {
        lc_err("unknown command \"%s\"", a.cmd);
        lc_usage(stderr);
        rc = LC_EUSAGE;
    }

    curl_global_cleanup();

    return rc;
}
