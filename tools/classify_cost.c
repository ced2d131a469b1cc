
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * classify_cost: classifies one request body N times with the module's own
 * code (parsed once, as the handler does), for callgrind to count the
 * classifier's instructions per call without nginx around it:
 *
 *   make classify-cost BODY=file.json [N=1000]
 *
 * runs it under valgrind --toggle-collect=ngx_http_llmroute_classify_explained
 * and prints the instructions of one classification (the scan of the ask,
 * the features, the two decisions and the title check; not the reason's
 * text, which is printed only when $llmroute_reason is read).  Built with
 * the flags nginx's build gives the module on Debian, so the count is the
 * module's (bench/callgrind.sh's inclusive classify_explained, within a
 * few instructions).
 *
 *   classify_cost file.json N
 *
 * prints the tier and the features of the last call, so that two builds
 * can be seen to classify alike.
 */


#include <ngx_http_llmroute_core.h>

#include <stdio.h>
#include <stdlib.h>


static void *classify_cost_alloc(void *data, size_t size);

/* the features' names, in order (ngx_http_llmroute_classify.c) */
extern ngx_str_t  ngx_http_llmroute_classifier_names[];


int
main(int argc, char **argv)
{
    long                            n, i;
    FILE                           *f;
    u_char                         *body;
    size_t                          len, size;
    ngx_uint_t                      tier, k;
    ngx_http_llmroute_req_t         req;
    ngx_http_llmroute_explain_t     ex;
    ngx_http_llmroute_classifier_t  cl;

    if (argc != 3 || (n = strtol(argv[2], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: classify_cost body.json N\n");
        return 2;
    }

    f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }

    size = 1 << 20;
    len = 0;
    body = malloc(size);

    while (body != NULL && (k = fread(body + len, 1, size - len, f)) > 0) {
        len += k;

        if (len == size) {
            size *= 2;
            body = realloc(body, size);
        }
    }

    fclose(f);

    if (body == NULL) {
        fprintf(stderr, "classify_cost: out of memory\n");
        return 2;
    }

    ngx_http_llmroute_classifier_init(&cl);

    if (ngx_http_llmroute_parse(&req, body, len, classify_cost_alloc, NULL)
        != NGX_OK
        || req.error)
    {
        fprintf(stderr, "classify_cost: %s: not a chat completion\n",
                argv[1]);
        return 2;
    }

    tier = 0;

    for (i = 0; i < n; i++) {
        tier = ngx_http_llmroute_classify_explained(&cl, &req, &ex);
    }

    printf("tier=%s", (char *) ngx_http_llmroute_tier_names[tier].data);

    for (k = 0; ngx_http_llmroute_classifier_names[k].len; k++) {
        printf(" %a", ex.f[k]);
    }

    printf("\n");

    return 0;
}


/* the parser's allocations live as long as the process */

static void *
classify_cost_alloc(void *data, size_t size)
{
    (void) data;

    return malloc(size ? size : 1);
}
