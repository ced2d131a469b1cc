
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The catalog read from an nginx include file by the standalone tools.
 */


#ifndef _CATALOG_CONF_H_INCLUDED_
#define _CATALOG_CONF_H_INCLUDED_


#include <ngx_http_llmroute_core.h>


#define LLMROUTE_CONF_MAX_MODELS  64
#define LLMROUTE_CONF_MAX_ARGS    32


/* the program name in error messages */
extern const char  *llmroute_conf_prog;

ngx_int_t llmroute_conf_catalog(ngx_http_llmroute_catalog_t *cat,
    const char *name);
ngx_int_t llmroute_conf_setting(ngx_http_llmroute_classifier_t *cl,
    u_char *p, size_t len);
u_char *llmroute_conf_read_file(const char *name, size_t *len);


#endif /* _CATALOG_CONF_H_INCLUDED_ */
