
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * genbody SIZE [FILE]: writes the benchmark chat body of about SIZE bytes
 * (2k, 64k, 1m, or a byte count) to FILE or stdout; the same bodies as
 * micro.c and json_compare.c, for wrk (bench/run.sh).
 */


#include <stdio.h>
#include "bodies.h"
#include "size.h"


int
main(int argc, char **argv)
{
    FILE    *f;
    char    *body;
    size_t   len, target;

    if (argc < 2 || (target = bench_parse_size(argv[1])) == 0) {
        fprintf(stderr, "usage: genbody SIZE [FILE]\n");
        return 2;
    }

    body = bench_body(target, &len);

    f = argc > 2 ? fopen(argv[2], "wb") : stdout;
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }

    if (fwrite(body, 1, len, f) != len || (f != stdout && fclose(f) != 0)) {
        perror("write");
        return 1;
    }

    free(body);

    return 0;
}
