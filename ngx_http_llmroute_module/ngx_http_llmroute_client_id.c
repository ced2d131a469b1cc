
/*
 * Client identities: what `llmroute_client` evaluates to is often a secret
 * (an API key, $http_authorization).  It is never stored: the zone's
 * client nodes, the Redis key names and anything printed about a client
 * use HMAC-SHA256(secret, value), its first 16 bytes in hex.  The secret
 * is per deployment (`llmroute_client_hash key_env=VAR;`), so that every
 * node of a cluster names a client alike and a leaked Redis dump cannot
 * be matched against guessed keys; without it (one node, no Redis) a
 * random secret is made with the zone and kept across reloads.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_http_llmroute_module.h"


#define NGX_HTTP_LLMROUTE_CLIENT_SECRET_MIN  16


/* llmroute_client_hash key_env=VAR; */

char *
ngx_http_llmroute_client_hash(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llmroute_main_conf_t *lmcf = conf;

    u_char     *v;
    ngx_str_t  *value, name;

    value = cf->args->elts;

    if (lmcf->client_secret.data) {
        return "is duplicate";
    }

    if (value[1].len <= sizeof("key_env=") - 1
        || ngx_strncmp(value[1].data, "key_env=", 8) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" (expected "
                           "key_env=VAR)", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.len = value[1].len - 8;
    name.data = ngx_pnalloc(cf->pool, name.len + 1);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(name.data, value[1].data + 8, name.len + 1);

    v = (u_char *) getenv((char *) name.data);

    /* the secret itself is never printed */

    if (v == NULL || ngx_strlen(v) < NGX_HTTP_LLMROUTE_CLIENT_SECRET_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "environment variable \"%V\" of \"%V\" is %s "
                           "(it needs \"env %V;\" in the main context and "
                           "at least %d bytes)", &name, &value[1],
                           v ? "too short" : "not set", &name,
                           NGX_HTTP_LLMROUTE_CLIENT_SECRET_MIN);
        return NGX_CONF_ERROR;
    }

    lmcf->client_secret.len = ngx_strlen(v);
    lmcf->client_secret.data = ngx_pnalloc(cf->pool, lmcf->client_secret.len);
    if (lmcf->client_secret.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(lmcf->client_secret.data, v, lmcf->client_secret.len);

    return NGX_CONF_OK;
}


/* llmroute_client is used: remember where, for the Redis check */

void
ngx_http_llmroute_client_used(ngx_conf_t *cf)
{
    ngx_http_llmroute_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llmroute_module);

    if (lmcf->client_file == NULL) {
        lmcf->client_file = cf->conf_file->file.name.data;
        lmcf->client_line = cf->conf_file->line;
    }
}


/*
 * Nodes sharing Redis must hash alike: a random per-zone secret would
 * split one client into one identity per node.
 */

ngx_int_t
ngx_http_llmroute_client_hash_check(ngx_conf_t *cf,
    ngx_http_llmroute_main_conf_t *lmcf)
{
    if (lmcf->redis && lmcf->client_file && lmcf->client_secret.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"llmroute_client\" with \"llmroute_redis\" needs "
                      "\"llmroute_client_hash key_env=VAR;\" at http level "
                      "(every node must hash client keys with the same "
                      "secret), in %s:%ui",
                      lmcf->client_file, lmcf->client_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a fresh zone: its own random secret, for when none is configured */

ngx_int_t
ngx_http_llmroute_client_zone_secret(u_char *secret, size_t len)
{
    if (RAND_bytes(secret, (int) len) != 1) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* id->data must hold NGX_HTTP_LLMROUTE_CLIENT_ID_LEN bytes */

ngx_int_t
ngx_http_llmroute_client_id(ngx_http_llmroute_main_conf_t *lmcf,
    ngx_str_t *value, ngx_str_t *id)
{
    u_char        *key, md[EVP_MAX_MD_SIZE];
    size_t         key_len;
    unsigned int   md_len;

    if (lmcf->client_secret.len) {
        key = lmcf->client_secret.data;
        key_len = lmcf->client_secret.len;

    } else {
        key = lmcf->sh->client_secret;
        key_len = sizeof(lmcf->sh->client_secret);
    }

    if (HMAC(EVP_sha256(), key, (int) key_len, value->data, value->len,
             md, &md_len)
        == NULL)
    {
        return NGX_ERROR;
    }

    id->len = ngx_hex_dump(id->data, md, NGX_HTTP_LLMROUTE_CLIENT_ID_LEN / 2)
              - id->data;

    return NGX_OK;
}
