/*
 * llmroute-catalog: price and health feed for ngx_http_llmroute_module.
 * Runs beside nginx or as a Kubernetes CronJob, never inside a worker.
 */

#ifndef LLMROUTE_CATALOG_H_INCLUDED
#define LLMROUTE_CATALOG_H_INCLUDED

#include <stddef.h>
#include <stdint.h>


/* exit codes: README.md of this directory and docs/deploy.md list them */
enum {
    LC_OK = 0,
    LC_EUSAGE = 1,          /* bad command line */
    LC_EMAP = 2,            /* map file unreadable or invalid */
    LC_ESOURCE = 3,         /* source unreadable, connect/DNS failure */
    LC_ETIMEOUT = 4,        /* source or endpoint timed out */
    LC_ETLS = 5,            /* TLS handshake or certificate verification */
    LC_EHTTP = 6,           /* HTTP status >= 400 from the source */
    LC_EJSON = 7,           /* malformed JSON or not the expected shape */
    LC_EMISSING = 8,        /* a mapped model is missing or has bad prices */
    LC_EWRITE = 9,          /* could not write the output (old one kept) */
    LC_ENGINX_TEST = 10,    /* --nginx-test failed (old file restored) */
    LC_ERELOAD = 11,        /* --reload failed (new file in place) */
    LC_EREDIS = 12,         /* Redis connect/auth/command error */
    LC_EPROBE = 13          /* probe: some endpoint is not healthy */
};

#define LC_TOOLS    0x01
#define LC_JSON     0x02
#define LC_VISION   0x04

#define LC_PRICE_UNSET  UINT64_MAX


typedef struct {
    /* from the map file */
    char       *provider;
    char       *model;
    char       *source_id;      /* NULL: static entry, prices from the map */
    char       *tier;
    unsigned    caps;
    int         caps_auto;      /* derive caps from the source */
    uint64_t    map_input;      /* milli-USD per 1M tokens, or unset */
    uint64_t    map_output;
    uint64_t    map_cached;
    int         cached_as_input;
    uint64_t    map_context;    /* 0: none */
    char       *stream_usage;   /* "on", "off" or NULL */
    int         line;

    /* resolved */
    uint64_t    input;
    uint64_t    output;
    uint64_t    cached;         /* LC_PRICE_UNSET: defaults to input */
    uint64_t    context;
    int         found;
} lc_entry_t;


typedef struct {
    lc_entry_t *entries;
    size_t      n;
} lc_map_t;


typedef struct {
    long        timeout_ms;
    long        connect_timeout_ms;
    const char *cacert;
    int         insecure;       /* tests only: --insecure */
} lc_http_opts_t;


/* util.c */
void lc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lc_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int lc_parse_decimal_e9(const char *s, uint64_t *out, int *rounded);
void lc_format_price(uint64_t milli, char *buf, size_t size);
int lc_parse_count(const char *s, uint64_t *out);
int lc_valid_name(const char *s);
int lc_valid_model_id(const char *s);
int lc_read_file(const char *path, char **data, size_t *len);

/* source.c */
int lc_fetch_source(const char *source, const lc_http_opts_t *opts,
    char **data, size_t *len);
int lc_curl_code(int curl_code, const char *what, const char *url,
    const char *curl_error);
int lc_map_load(const char *path, lc_map_t *map);
void lc_map_free(lc_map_t *map);
int lc_map_resolve(lc_map_t *map, const char *json, int allow_missing);
int lc_render(const lc_map_t *map, const char *source, char **out,
    size_t *len);

/* redis.c */
typedef struct redisContext lc_redis_t;
int lc_redis_connect(const char *addr, const char *password_env,
    lc_redis_t **out);
int lc_redis_publish_prices(lc_redis_t *c, const char *prefix,
    const lc_map_t *map, const char *source);
int lc_redis_publish_health(lc_redis_t *c, const char *prefix,
    const char *provider, const char *state, long http_code,
    long latency_ms, const char *error, long ttl);
void lc_redis_free(lc_redis_t *c);

/* probe.c */
int lc_probe(const char *config, const lc_http_opts_t *opts,
    const char *redis, const char *prefix, const char *password_env,
    long ttl);

/* reprice.c */
int lc_reprice(int argc, char **argv);

#endif /* LLMROUTE_CATALOG_H_INCLUDED */
