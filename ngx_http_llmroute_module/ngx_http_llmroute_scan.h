
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The request body's JSON tokenizer: a strict validating scan that fills
 * jsmn's token array (same tokens as jsmn_parse() with JSMN_STRICT and
 * JSMN_PARENT_LINKS), so the readers of ngx_http_llmroute_json.c stay as
 * they are.
 */


#ifndef _NGX_HTTP_LLMROUTE_SCAN_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_SCAN_H_INCLUDED_


#ifndef JSMN_H
#define JSMN_HEADER
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#endif


#pragma GCC visibility push(hidden)    /* ngx_http_llmroute_core.h */


/* as jsmn's: more tokens than given; then count with tok NULL */
#define NGX_HTTP_LLMROUTE_SCAN_NOMEM  -1
/* not JSON: a syntax error, a raw control character in a string, ... */
#define NGX_HTTP_LLMROUTE_SCAN_INVAL  -2
/* the input ends inside a value */
#define NGX_HTTP_LLMROUTE_SCAN_PART   -3
/* more than NGX_HTTP_LLMROUTE_SCAN_DEPTH nested containers */
#define NGX_HTTP_LLMROUTE_SCAN_DEEP   -4

#define NGX_HTTP_LLMROUTE_SCAN_DEPTH  64


/*
 * One JSON value (RFC 8259; strings are not checked for UTF-8), with
 * whitespace around it and nothing else: returns its token count, tokens
 * written to tok when tok is not NULL, or one of the errors above.
 */
int ngx_http_llmroute_scan(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok);

/*
 * Whether a top-level member's value is tokenized shallowly: called with
 * the key of each container value of a top-level object (its bytes
 * between the quotes, escapes as sent); non-zero makes the value one token
 * (type, span, size, parent) and no child tokens, its contents validated
 * as strictly as the rest.  For a value no reader descends into (the tools
 * of a request).
 */
typedef ngx_uint_t (*ngx_http_llmroute_scan_shallow_pt)(u_char *name,
    size_t len, void *data);

/*
 * ngx_http_llmroute_scan() with the values shallow() names one token each:
 * returns the tokens written (tok NULL: to be written) or an error; on
 * success *all is the full scan's token count (what a limit on values
 * counts).
 */
int ngx_http_llmroute_scan_shallow(u_char *body, size_t len, jsmntok_t *tok,
    size_t ntok, ngx_http_llmroute_scan_shallow_pt shallow, void *data,
    int *all);

/*
 * the code the scanner runs: "sse2", "neon" or "swar" as compiled, or
 * "avx2" for long strings on an x86-64 CPU with AVX2 (picked at load)
 */
extern const char  *ngx_http_llmroute_scan_kind;

#ifdef NGX_HTTP_LLMROUTE_STANDALONE
/* 1: ngx_http_llmroute_parse() takes the jsmn path (fuzzer, benchmark) */
extern ngx_uint_t  ngx_http_llmroute_scan_off;

/*
 * the AVX2 walk (1) or the build's own code (0) from now on, so tests run
 * every path: NGX_ERROR if this build or CPU has no AVX2 walk
 */
ngx_int_t ngx_http_llmroute_scan_use(ngx_uint_t avx2);
#endif


#pragma GCC visibility pop


#endif /* _NGX_HTTP_LLMROUTE_SCAN_H_INCLUDED_ */
