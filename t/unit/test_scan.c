
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Unit tests of the request body's tokenizer (ngx_http_llmroute_scan.c):
 * bodies it must accept and refuse, jsmn's tokens for what it accepts, and
 * every special byte ('"', '\\', a control character, whitespace) and every
 * other byte value at every offset around the 8- and 16-byte blocks and
 * the 64-byte chunks it reads.  Every body is also scanned as the value
 * of a member kept shallow (ngx_http_llmroute_scan_shallow()): the same
 * verdict and error, one token for a container.  Built twice by the
 * Makefile: vector code (SSE2 / NEON) and -DNGX_HTTP_LLMROUTE_SCAN_SWAR.
 */


#include <ngx_http_llmroute_core.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include <ngx_http_llmroute_scan.h>


#define TOKS  512

static int  failures, checks;


static ngx_uint_t
shallow_all(u_char *name, size_t len, void *data)
{
    return 1;
}


static ngx_uint_t
shallow_tools(u_char *name, size_t len, void *data)
{
    return len == 5 && memcmp(name, "tools", 5) == 0;
}


/*
 * {"k":<s>} with its value shallow: the full scan's answer, and for a
 * container its first three tokens only (the object, the key, the value)
 */

static void
scan_shallow(const char *s, size_t len)
{
    int          n, m, c, all, i;
    u_char      *b;
    jsmntok_t    tok[TOKS], st[TOKS];

    b = malloc(len + 6);
    memcpy(b, "{\"k\":", 5);
    memcpy(b + 5, s, len);
    b[len + 5] = '}';

    n = ngx_http_llmroute_scan(b, len + 6, tok, TOKS);
    all = -1;
    m = ngx_http_llmroute_scan_shallow(b, len + 6, st, TOKS, shallow_all,
                                       NULL, &all);
    c = ngx_http_llmroute_scan_shallow(b, len + 6, NULL, 0, shallow_all,
                                       NULL, &all);

    if (n <= 0) {
        if (m != n || c != n) {
            printf("FAIL shallow %d, %d counting, full %d: %.*s\n",
                   m, c, n, (int) len, s);
            failures++;
        }

        free(b);
        return;
    }

    i = (tok[2].type == JSMN_OBJECT || tok[2].type == JSMN_ARRAY) ? 3 : n;

    if (m != i || c != i || all != n || memcmp(st, tok, i * sizeof(jsmntok_t)))
    {
        printf("FAIL shallow tokens (%d of %d, all %d): %.*s\n",
               m, n, all, (int) len, s);
        failures++;
    }

    free(b);
}


/* tokens equal to jsmn's, exact-size heap copy so ASan sees overreads */

static int
scan(const char *s, size_t len)
{
    int          n, c, i;
    u_char      *b;
    jsmntok_t    tok[TOKS], jt[TOKS];
    jsmn_parser  p;

    b = malloc(len ? len : 1);
    memcpy(b, s, len);

    n = ngx_http_llmroute_scan(b, len, tok, TOKS);
    c = ngx_http_llmroute_scan(b, len, NULL, 0);

    if (c != n) {
        printf("FAIL count %d != %d: %.*s\n", c, n, (int) len, s);
        failures++;
    }

    if (n > 0 && (s[0] == '{' || s[0] == '[' || s[0] == '"')) {
        jsmn_init(&p);
        c = jsmn_parse(&p, (const char *) b, len, jt, TOKS);

        if (c != n || memcmp(tok, jt, n * sizeof(jsmntok_t)) != 0) {
            for (i = 0; i < n && i < c; i++) {
                if (memcmp(&tok[i], &jt[i], sizeof(jsmntok_t)) != 0) {
                    break;
                }
            }

            printf("FAIL tokens differ from jsmn's (%d/%d, at %d): %.*s\n",
                   n, c, i, (int) len, s);
            failures++;
        }
    }

    free(b);

    scan_shallow(s, len);

    return n;
}


static void
expect(const char *s, size_t len, int ok)
{
    int  n;

    checks++;
    n = scan(s, len);

    if ((n > 0) != ok) {
        printf("FAIL %s (%d): \"%.*s\"\n", ok ? "refused" : "accepted", n,
               (int) len, s);
        failures++;
    }
}


#define yes(s)  expect(s, sizeof(s) - 1, 1)
#define no(s)   expect(s, sizeof(s) - 1, 0)


static void
test_table(void)
{
    char  deep[200];

    yes("{}");
    yes(" \t\r\n{ } \n");
    yes("[]");
    yes("\"s\"");
    yes("0");
    yes("-0.5e+10");
    yes("true");
    yes("{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"e\":{}}");
    yes("{\"\":\"\"}");
    yes("[\"\\u00e9\\uD83D\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"]");
    yes("{\"t\":\"\xff\xfe\x80 bytes not UTF-8 \x7f\"}");
    yes("[1e5,1E-5,0.0,-0,123]");

    no("");
    no("   ");
    no("{");
    no("{\"a\"");
    no("{\"a\":");
    no("{\"a\":1");
    no("{\"a\":1,}");
    no("[1,]");
    no("[,1]");
    no("[1,,2]");
    no("{,}");
    no("[,]");
    no("{:}");
    no("{\"a\" 1}");
    no("{\"a\":1 \"b\":2}");
    no("{\"a\":\"b\":\"c\"}");
    no("[\"a\":\"b\"]");
    no("{1:2}");
    no("{\"a\":1]");
    no("[1}");
    no("]");
    no("{} {}");
    no("{}x");
    no("{}\x00");
    no("[01]");
    no("[1.]");
    no("[.5]");
    no("[-]");
    no("[1e]");
    no("[1e+]");
    no("[+1]");
    no("[tru]");
    no("[truex]");
    no("[nul]");
    no("[True]");
    no("[NaN]");
    no("[\"a\x01\"]");
    no("[\"a\tb\"]");
    no("[\"\\x\"]");
    no("[\"\\u12\"]");
    no("[\"\\u12G4\"]");
    no("[\"\\");
    no("[\"abc");
    no("[1]\v");
    no("\f[1]");
    no("[1 2]");

    /* the depth limit: 64 nested containers, not 65 */

    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    expect(deep, 128, 1);

    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    checks++;
    if (scan(deep, 130) != NGX_HTTP_LLMROUTE_SCAN_DEEP) {
        printf("FAIL 65 deep not refused as too deep\n");
        failures++;
    }
}


/* a special byte at each offset of a string, and whitespace runs */

static void
test_blocks(void)
{
    int     at, run, c;
    char    b[128];
    size_t  len;

    for (at = 0; at < 48; at++) {

        /* ["xxxx<special>xxx"] */

        memset(b, 'x', sizeof(b));
        b[0] = '[';
        b[1] = '"';
        len = 2 + 48 + 2;
        b[len - 2] = '"';
        b[len - 1] = ']';

        /* every byte but the two that need a partner: only controls fail */

        for (c = 0; c < 256; c++) {
            if (c != '"' && c != '\\') {
                b[2 + at] = (char) c;
                expect(b, len, c >= 0x20);
            }
        }

        b[2 + at] = '\x1f';
        expect(b, len, 0);

        b[2 + at] = '\n';
        expect(b, len, 0);

        b[2 + at] = '\x7f';
        expect(b, len, 1);

        b[2 + at] = '\x80';
        expect(b, len, 1);

        b[2 + at] = '"';
        expect(b, len, 0);      /* a string, then x: not a separator */

        b[2 + at] = '\\';
        expect(b, len, 0);      /* \x is no escape */

        if (at < 47) {
            b[2 + at + 1] = 'n';
            expect(b, len, 1);
        }

        /* the string ends at 'at', then a whitespace run, then ']' */

        for (run = 0; run < 40; run += 7) {
            memset(b, ' ', sizeof(b));
            b[0] = '[';
            b[1] = '"';
            memset(b + 2, 'y', at);
            b[2 + at] = '"';
            len = 3 + at + run + 1;
            b[len - 1] = ']';
            expect(b, len, 1);

            if (run > 0) {
                b[3 + at + run / 2] = '\v';
                expect(b, len, 0);
                b[3 + at + run / 2] = '\t';
                expect(b, len, 1);
            }
        }
    }
}


/*
 * Long strings, read 64 bytes at a step: an escape, a bad escape, a control
 * character or a quote at every offset of the first chunks (so across their
 * edges and the 5 bytes a \uXXXX may reach past one), after a first block
 * with or without a special, each string also cut at every length.
 */

/* runs of 8 and 7 backslashes */
#define BS8  "\\\\\\\\\\\\\\\\"
#define BS7  "\\\\\\\\\\\\\\"

static void
test_long(void)
{
    int          at, lead, i, ok;
    char         b[320];
    size_t       len, plen, cut;
    const char  *pat;

    static const struct {
        const char  *text;
        int          ok;
    } pats[] = {
        { "\\n", 1 }, { "\\\"", 1 }, { "\\\\", 1 }, { "\\/", 1 },
        { "\\\\\\\"", 1 }, { "\\\\\\\\\\\\", 1 }, { "\\u00e9", 1 },
        { "\\uD83D\\uDE00", 1 }, { "\\\\\\n\\t", 1 }, { "\\r\\b\\f", 1 },
        { "\\u00g9", 0 }, { "\\u12\"", 0 }, { "\\x", 0 }, { "\\\x01", 0 },
        { "\x01", 0 }, { "\x1f", 0 }, { "\\", 0 }, { "\\\\\\", 0 },
        { "\"", 0 }, { "\\\\\"", 0 },

        /* runs of backslashes across a chunk's edge: 40, then 39 and a byte */
        { BS8 BS8 BS8 BS8 BS8, 1 }, { BS8 BS8 BS8 BS8 BS7 "n", 1 },
        { BS8 BS8 BS8 BS8 BS7 "\"", 1 }, { BS8 BS8 BS8 BS8 BS7 "x", 0 },
        { BS8 BS8 BS8 BS8 BS7 "\x01", 0 }
    };

    for (i = 0; i < (int) (sizeof(pats) / sizeof(pats[0])); i++) {
        pat = pats[i].text;
        plen = strlen(pat);

        for (lead = 0; lead < 2; lead++) {
            for (at = 0; at < 150; at++) {

                /* ["<lead>xxx<pat>xxx"] with 200 bytes of contents */

                memset(b, 'x', sizeof(b));
                b[0] = '[';
                b[1] = '"';

                if (lead) {
                    b[2] = '\\';     /* the first block ends in an escape */
                    b[3] = 't';
                }

                memcpy(b + 2 + 2 * lead + at, pat, plen);
                len = 2 + 200;
                b[len++] = '"';
                b[len++] = ']';

                expect(b, len, pats[i].ok);

                /* cut anywhere in the string: never accepted */

                for (cut = 2 + at; cut < 2 + at + plen + 8; cut++) {
                    expect(b, cut, 0);
                }

                /* the string then more members after it */

                ok = pats[i].ok;
                memcpy(b + len - 1, ",\"y\",1]", 7);
                expect(b, len + 6, ok);
            }
        }
    }
}


/*
 * Strings of every length from 0 to 80, which end in the first block, in
 * the 32 (AVX2) or 16 (SSE2, NEON) bytes probed before the long walk, or in
 * its first chunk, each at several distances from the body's end (a string
 * in the last block is read from the block that ends there, a body shorter
 * than a block a byte at a time): plain, then with a control character, a
 * quote, an escape, a \uXXXX, a bad escape and a backslash before the
 * closing quote at every position; each cut at every length.
 */

static void
test_short(void)
{
    int          len, at, k, i, ok;
    char         b[200];
    size_t       n, cut, plen;
    const char  *pat;

    static const size_t  trail[] = { 0, 1, 7, 15, 16, 17, 31, 40, 69 };

    static const struct {
        const char  *text;
        int          ok;
    } pats[] = {
        { "\x01", 0 }, { "\x1f", 0 }, { "\"", 0 }, { "\\n", 1 },
        { "\\\"", 1 }, { "\\\\", 1 }, { "\\u00e9", 1 }, { "\\r", 1 },
        { "\\x", 0 }, { "\\u0g00", 0 }, { "\\", 0 }
    };

    for (len = 0; len <= 80; len++) {
        for (k = 0; k < (int) (sizeof(trail) / sizeof(trail[0])); k++) {

            /* ["xxx"] and trail[k] spaces */

            memset(b, ' ', sizeof(b));
            b[0] = '[';
            b[1] = '"';
            memset(b + 2, 'x', len);
            b[2 + len] = '"';
            b[3 + len] = ']';
            n = 4 + len + trail[k];

            expect(b, n, 1);

            for (at = 0; at < len; at++) {
                for (i = 0; i < (int) (sizeof(pats) / sizeof(pats[0])); i++) {
                    pat = pats[i].text;
                    plen = strlen(pat);

                    if (at + plen > (size_t) len) {
                        continue;
                    }

                    memcpy(b + 2 + at, pat, plen);

                    /* a lone backslash last escapes the closing quote */
                    ok = pats[i].ok;
                    expect(b, n, ok);

                    memset(b + 2 + at, 'x', plen);
                }
            }
        }

        /* the string alone: every cut is refused */

        memset(b, 'x', sizeof(b));
        b[0] = '"';
        b[1 + len] = '"';

        for (cut = 0; cut <= (size_t) len + 1; cut++) {
            expect(b, cut, 0);
        }

        expect(b, len + 2, 1);

        /* and with an escape at every position, cut inside it */

        for (at = 0; at + 2 <= len; at++) {
            b[1 + at] = '\\';
            b[2 + at] = 'n';
            expect(b, len + 2, 1);
            expect(b, 2 + at, 0);
            expect(b, 3 + at, 0);
            b[1 + at] = 'x';
            b[2 + at] = 'x';
        }

        /* a key of that length, then its value */

        memset(b, 'x', sizeof(b));
        b[0] = '{';
        b[1] = '"';
        b[2 + len] = '"';
        memcpy(b + 3 + len, ":\"v\"}", 5);
        expect(b, len + 8, 1);
        expect(b, len + 7, 0);
    }
}


/*
 * Members in compact JSON, where a key's ':' and a string value's quote are
 * read without an end test when a block follows the key: each value kind,
 * with and without whitespace, every prefix (never accepted) and a bad byte
 * for the ':' at every key.
 */

static void
test_members(void)
{
    int          i;
    char         b[256];
    size_t       len, cut, at;
    const char  *obj;

    static const char  *objs[] = {
        "{\"model\":\"auto\",\"n\":1,\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"read_file\",\"strict\":true,"
        "\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],"
        "\"stream\":false,\"stop\":null,\"t\":-0.5e3,\"s\":\"\\\"x\\n\"}",
        "{ \"model\" : \"auto\" , \"a\":\t[ \"b\" ] ,\"c\" :{\"d\": \"e\"} }",
        "{\"a\":\"\",\"b\":\"\",\"c\":\"\",\"d\":\"\",\"e\":\"\",\"f\":{}}"
    };

    for (i = 0; i < (int) (sizeof(objs) / sizeof(objs[0])); i++) {
        obj = objs[i];
        len = strlen(obj);

        expect(obj, len, 1);

        for (cut = 0; cut < len; cut++) {
            expect(obj, cut, 0);
        }

        for (at = 1; at < len; at++) {
            if (obj[at] != ':') {
                continue;
            }

            memcpy(b, obj, len);
            b[at] = ';';
            expect(b, len, 0);

            b[at] = ',';
            expect(b, len, 0);
        }
    }
}


/*
 * An agent's body, its tools shallow: one token for them, their count and
 * span, every value counted; an error deep in them is the full scan's.
 */

static void
test_shallow(void)
{
    int          n, m, c, all, i;
    char         b[512], deep[300];
    size_t       len, at;
    jsmntok_t    tok[TOKS], st[TOKS];

    static const char  agent[] =
        "{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":"
        "\"fix it\"}],\"tools\":[{\"type\":\"function\",\"function\":{"
        "\"name\":\"read_file\",\"description\":\"Read a file of the "
        "workspace, optionally a line range; \\\"quoted\\\" \\u00e9\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"path\":{"
        "\"type\":\"string\"},\"lines\":{\"type\":\"array\",\"items\":"
        "{\"type\":\"integer\",\"minimum\":1}}},\"required\":[\"path\"],"
        "\"additionalProperties\":false}}}, {\"type\":\"function\","
        "\"function\":{\"name\":\"ls\",\"parameters\":{}}} ],"
        "\"tool_choice\":\"auto\",\"stream\":true}";

    static const struct {
        const char  *from;
        const char  *to;
    } bad[] = {
        { "\\u00e9", "\\u00g9" },           /* a bad escape */
        { "\\\"quoted", "\\xquoted" },
        { "optionally", "option\x01ly" },   /* a raw control character */
        { "\"path\"],", "\"path\",]," },     /* trailing commas */
        { "\"ls\",", "\"ls\",," },
        { "\"minimum\":1", "\"minimum\":01" },
        { "false}", "fals}" },
        { "\"items\":", "\"items\"" },
        { "{}}} ]", "{}}}} ]" },
        { "{}}} ]", "{}} ]" }
    };

    len = sizeof(agent) - 1;

    n = ngx_http_llmroute_scan((u_char *) agent, len, tok, TOKS);
    m = ngx_http_llmroute_scan_shallow((u_char *) agent, len, st, TOKS,
                                       shallow_tools, NULL, &all);
    c = ngx_http_llmroute_scan_shallow((u_char *) agent, len, NULL, 0,
                                       shallow_tools, NULL, &all);

    /*
     * 16 tokens: the full scan's first 12 (the tools' array last, with its
     * size and end), then those after the tools, parents renumbered
     */

    checks++;
    if (n < 40 || m != 16 || c != 16 || all != n
        || st[11].type != JSMN_ARRAY || st[11].size != 2
        || memcmp(st, tok, 12 * sizeof(jsmntok_t)) != 0
        || st[12].start != tok[12 + n - 16].start
        || st[12].parent != 0 || st[15].parent != 14)
    {
        printf("FAIL shallow agent: %d tokens, %d shallow, %d counted, "
               "all %d, tools size %d\n", n, m, c, all, st[11].size);
        failures++;
    }

    for (i = 0; i < (int) (sizeof(bad) / sizeof(bad[0])); i++) {
        at = strstr(agent, bad[i].from) - agent;
        memcpy(b, agent, at);
        memcpy(b + at, bad[i].to, strlen(bad[i].to));
        memcpy(b + at + strlen(bad[i].to), agent + at + strlen(bad[i].from),
               len - at - strlen(bad[i].from));
        at = len + strlen(bad[i].to) - strlen(bad[i].from);

        n = ngx_http_llmroute_scan((u_char *) b, at, tok, TOKS);
        m = ngx_http_llmroute_scan_shallow((u_char *) b, at, st, TOKS,
                                           shallow_tools, NULL, &all);

        checks++;
        if (n > 0 || m != n) {
            printf("FAIL shallow bad tools %d: full %d, shallow %d\n",
                   i, n, m);
            failures++;
        }
    }

    /* cut anywhere: the full scan's error */

    for (at = 0; at < len; at++) {
        n = ngx_http_llmroute_scan((u_char *) agent, at, tok, TOKS);
        m = ngx_http_llmroute_scan_shallow((u_char *) agent, at, st, TOKS,
                                           shallow_tools, NULL, &all);

        checks++;
        if (n > 0 || m != n) {
            printf("FAIL shallow cut at %d: full %d, shallow %d\n",
                   (int) at, n, m);
            failures++;
        }
    }

    /* {"tools":[[...]]}: 64 containers in all pass, 65 are too deep */

    for (i = 63; i <= 64; i++) {
        memcpy(deep, "{\"tools\":", 9);
        memset(deep + 9, '[', i);
        memset(deep + 9 + i, ']', i);
        deep[9 + 2 * i] = '}';
        len = 10 + 2 * i;

        n = ngx_http_llmroute_scan((u_char *) deep, len, tok, TOKS);
        m = ngx_http_llmroute_scan_shallow((u_char *) deep, len, st, TOKS,
                                           shallow_tools, NULL, &all);

        checks++;
        if (m != (i == 63 ? 3 : NGX_HTTP_LLMROUTE_SCAN_DEEP)
            || n != (i == 63 ? 65 : NGX_HTTP_LLMROUTE_SCAN_DEEP)
            || (i == 63 && all != 65))
        {
            printf("FAIL shallow %d deep: full %d, shallow %d\n", i + 1, n, m);
            failures++;
        }
    }
}


/* every walk this build and CPU have: the AVX2 one, then the build's own */

int
main(void)
{
    int  i, all;

    all = 0;

    for (i = 0; i < 2; i++) {
        if (ngx_http_llmroute_scan_use(i == 0) != NGX_OK) {
            continue;
        }

        checks = 0;
        test_table();
        test_blocks();
        test_long();
        test_short();
        test_members();
        test_shallow();

        printf("test_scan (%s): %d checks, %d failures\n",
               ngx_http_llmroute_scan_kind, checks, failures);

        all += checks;
    }

    return (failures || all == 0) ? 1 : 0;
}
