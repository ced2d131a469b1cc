/*
 * llmroute-catalog probe: GET each provider's /models endpoint in parallel
 * (libcurl multi), print state and latency, optionally publish to Redis.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "llmroute_catalog.h"


#define LC_MAX_PROBES  64


typedef struct {
    char                *name;
    char                *url;          /* the chat-completions URL */
    char                 probe_url[1024];
    char                *key_env;
    char                 connect_to[600];
    CURL                *h;
    struct curl_slist   *headers;
    struct curl_slist   *connect;
    char                 errbuf[CURL_ERROR_SIZE];
    const char          *state;
    long                 http_code;
    long                 latency_ms;
    char                 detail[CURL_ERROR_SIZE + 64];
} lc_probe_t;


typedef struct {
    char  *name;
    char  *server;                      /* first "server" of the block */
} lc_upstream_t;


static size_t lc_discard(char *ptr, size_t size, size_t nmemb, void *ud);
static int lc_parse_config(char *text, lc_probe_t *p, size_t *np,
    lc_upstream_t *u, size_t *nu);
static void lc_probe_setup(lc_probe_t *p, lc_upstream_t *u, size_t nu,
    const lc_http_opts_t *opts);
static void lc_probe_done(lc_probe_t *p, CURLcode cc);


static size_t
lc_discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void) ptr;
    (void) ud;

    return size * nmemb;
}


/*
 * Just enough of nginx's syntax: statements end at ';', '{' or '}',
 * '#' comments, quotes kept as is.  Collects llmroute_provider lines and
 * the first server of every upstream{} block.
 */

static int
lc_parse_config(char *text, lc_probe_t *p, size_t *np, lc_upstream_t *u,
    size_t *nu)
{
    char    *s, *tok[64], *cur_up, *save, *t, end;
    size_t   n, i;

    cur_up = NULL;
    *np = 0;
    *nu = 0;

    /* blank out comments */
    for (s = text; *s; s++) {
        if (*s == '#') {
            while (*s && *s != '\n') {
                *s++ = ' ';
            }

            if (*s == '\0') {
                break;
            }
        }
    }

    s = text;

    while (*s) {
        t = s + strcspn(s, ";{}");
        end = *t;
        *t = '\0';

        n = 0;

        for (tok[0] = strtok_r(s, " \t\r\n", &save);
             tok[n] != NULL && n < 63;
             tok[n] = strtok_r(NULL, " \t\r\n", &save))
        {
            n++;
        }

        if (end == '{') {
            if (n == 2 && strcmp(tok[0], "upstream") == 0 && *nu < 256) {
                cur_up = tok[1];
                u[*nu].name = tok[1];
                u[*nu].server = NULL;
                (*nu)++;
            }

        } else if (end == '}') {
            cur_up = NULL;

        } else if (n >= 2 && cur_up && strcmp(tok[0], "server") == 0) {
            if (u[*nu - 1].server == NULL) {
                u[*nu - 1].server = tok[1];
            }

        } else if (n >= 3 && strcmp(tok[0], "llmroute_provider") == 0) {
            if (*np == LC_MAX_PROBES) {
                lc_err("more than %d providers", LC_MAX_PROBES);
                return -1;
            }

            memset(&p[*np], 0, sizeof(lc_probe_t));
            p[*np].name = tok[1];
            p[*np].url = tok[2];

            for (i = 3; i < n; i++) {
                if (strncmp(tok[i], "key_env=", 8) == 0) {
                    p[*np].key_env = tok[i] + 8;
                }
            }

            (*np)++;
        }

        if (end == '\0') {
            break;
        }

        s = t + 1;
    }

    return 0;
}


static void
lc_probe_setup(lc_probe_t *p, lc_upstream_t *u, size_t nu,
    const lc_http_opts_t *opts)
{
    char        host[256], hdr[4200], *slash;
    size_t      i, len, hl;
    const char *key, *rest, *suffix;
    int         https;

    /* .../chat/completions -> .../models (OpenAI-compatible listing) */
    suffix = "/chat/completions";
    len = strlen(p->url);

    if (len > strlen(suffix)
        && strcmp(p->url + len - strlen(suffix), suffix) == 0)
    {
        snprintf(p->probe_url, sizeof(p->probe_url), "%.*s/models",
                 (int) (len - strlen(suffix)), p->url);

    } else {
        snprintf(p->probe_url, sizeof(p->probe_url), "%s", p->url);
    }

    p->h = curl_easy_init();
    if (p->h == NULL) {
        return;
    }

    curl_easy_setopt(p->h, CURLOPT_URL, p->probe_url);
    curl_easy_setopt(p->h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(p->h, CURLOPT_TIMEOUT_MS, opts->timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_CONNECTTIMEOUT_MS,
                     opts->connect_timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->h, CURLOPT_USERAGENT, "llmroute-catalog/1 probe");
    curl_easy_setopt(p->h, CURLOPT_WRITEFUNCTION, lc_discard);
    curl_easy_setopt(p->h, CURLOPT_ERRORBUFFER, p->errbuf);
    curl_easy_setopt(p->h, CURLOPT_PRIVATE, p);
    curl_easy_setopt(p->h, CURLOPT_SSL_VERIFYPEER, opts->insecure ? 0L : 1L);
    curl_easy_setopt(p->h, CURLOPT_SSL_VERIFYHOST, opts->insecure ? 0L : 2L);

    if (opts->cacert) {
        curl_easy_setopt(p->h, CURLOPT_CAINFO, opts->cacert);
    }

    if (p->key_env) {
        key = getenv(p->key_env);

        if (key && *key) {
            snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", key);
            p->headers = curl_slist_append(p->headers, hdr);
            curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, p->headers);

        } else {
            snprintf(p->detail, sizeof(p->detail), "%s not set; ",
                     p->key_env);
        }
    }

    /* a URL host naming an upstream{} connects to its first server */
    https = strncmp(p->url, "https://", 8) == 0;
    rest = p->url + (https ? 8 : 7);
    hl = strcspn(rest, ":/");

    if (hl == 0 || hl >= sizeof(host)) {
        return;
    }

    memcpy(host, rest, hl);
    host[hl] = '\0';

    for (i = 0; i < nu; i++) {
        if (strcmp(u[i].name, host) != 0 || u[i].server == NULL
            || strncmp(u[i].server, "unix:", 5) == 0)
        {
            continue;
        }

        slash = strrchr(u[i].server, ':');

        snprintf(p->connect_to, sizeof(p->connect_to), "%s::%s%s", host,
                 u[i].server, slash ? "" : (https ? ":443" : ":80"));
        p->connect = curl_slist_append(NULL, p->connect_to);
        curl_easy_setopt(p->h, CURLOPT_CONNECT_TO, p->connect);
        break;
    }
}


static void
lc_probe_done(lc_probe_t *p, CURLcode cc)
{
    size_t      used;
    curl_off_t  us;

    us = 0;
    curl_easy_getinfo(p->h, CURLINFO_TOTAL_TIME_T, &us);
    curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &p->http_code);
    p->latency_ms = (long) (us / 1000);
    used = strlen(p->detail);

    if (cc == CURLE_OPERATION_TIMEDOUT) {
        p->state = "down";
        snprintf(p->detail + used, sizeof(p->detail) - used, "timeout: %s",
                 p->errbuf[0] ? p->errbuf : curl_easy_strerror(cc));

    } else if (cc == CURLE_PEER_FAILED_VERIFICATION
               || cc == CURLE_SSL_CONNECT_ERROR
               || cc == CURLE_SSL_CACERT_BADFILE)
    {
        p->state = "down";
        snprintf(p->detail + used, sizeof(p->detail) - used, "tls: %s",
                 p->errbuf[0] ? p->errbuf : curl_easy_strerror(cc));

    } else if (cc != CURLE_OK) {
        p->state = "down";
        snprintf(p->detail + used, sizeof(p->detail) - used, "connect: %s",
                 p->errbuf[0] ? p->errbuf : curl_easy_strerror(cc));

    } else if (p->http_code >= 200 && p->http_code < 300) {
        p->state = "up";

    } else if (p->http_code == 429) {
        p->state = "limited";
        snprintf(p->detail + used, sizeof(p->detail) - used, "http 429");

    } else if (p->http_code == 401 || p->http_code == 403) {
        p->state = "auth";
        snprintf(p->detail + used, sizeof(p->detail) - used,
                 "http %ld: key refused", p->http_code);

    } else if (p->http_code >= 500) {
        p->state = "down";
        snprintf(p->detail + used, sizeof(p->detail) - used, "http %ld",
                 p->http_code);

    } else {
        p->state = "error";
        snprintf(p->detail + used, sizeof(p->detail) - used, "http %ld",
                 p->http_code);
    }
}


int
lc_probe(const char *config, const lc_http_opts_t *opts, const char *redis,
    const char *prefix, const char *password_env, long ttl)
{
    int             running, left, rc, rrc;
    char           *text;
    size_t          len, np, nu, i;
    CURLM          *m;
    CURLMsg        *msg;
    lc_probe_t     *probes, *p;
    lc_redis_t     *rc_ctx;
    lc_upstream_t   ups[256];

    if (lc_read_file(config, &text, &len) != 0) {
        lc_err("cannot read config \"%s\": %s", config, strerror(errno));
        return LC_ESOURCE;
    }

    probes = calloc(LC_MAX_PROBES, sizeof(lc_probe_t));
    if (probes == NULL) {
        free(text);
        return LC_ESOURCE;
    }

    if (lc_parse_config(text, probes, &np, ups, &nu) != 0 || np == 0) {
        if (np == 0) {
            lc_err("no llmroute_provider in \"%s\" (includes are not "
                   "followed: name the file that defines the providers)",
                   config);
        }

        free(probes);
        free(text);
        return LC_EUSAGE;
    }

    rc_ctx = NULL;

    if (redis) {
        rrc = lc_redis_connect(redis, password_env, &rc_ctx);
        if (rrc != LC_OK) {
            free(probes);
            free(text);
            return rrc;
        }
    }

    m = curl_multi_init();

    for (i = 0; i < np; i++) {
        lc_probe_setup(&probes[i], ups, nu, opts);

        if (probes[i].h) {
            curl_multi_add_handle(m, probes[i].h);
        }
    }

    running = 1;

    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            break;
        }

        if (running) {
            curl_multi_poll(m, NULL, 0, 200, NULL);
        }
    }

    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        p = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &p);

        if (p) {
            lc_probe_done(p, msg->data.result);
        }
    }

    rc = LC_OK;
    printf("%-16s %-8s %4s %10s  %s\n", "PROVIDER", "STATE", "HTTP",
           "LATENCY_MS", "DETAIL");

    for (i = 0; i < np; i++) {
        p = &probes[i];

        if (p->state == NULL) {
            p->state = "down";
            snprintf(p->detail, sizeof(p->detail), "probe not run");
        }

        printf("%-16s %-8s %4ld %10ld  %s\n", p->name, p->state, p->http_code,
               p->latency_ms, p->detail);

        if (strcmp(p->state, "up") != 0 && rc == LC_OK) {
            rc = LC_EPROBE;
        }

        if (rc_ctx
            && lc_redis_publish_health(rc_ctx, prefix, p->name, p->state,
                                       p->http_code, p->latency_ms,
                                       p->detail, ttl)
               != LC_OK)
        {
            rc = LC_EREDIS;
        }

        if (p->h) {
            curl_multi_remove_handle(m, p->h);
            curl_easy_cleanup(p->h);
        }

        curl_slist_free_all(p->headers);
        curl_slist_free_all(p->connect);
    }

    fflush(stdout);
    curl_multi_cleanup(m);
    lc_redis_free(rc_ctx);
    free(probes);
    free(text);

    return rc;
}
