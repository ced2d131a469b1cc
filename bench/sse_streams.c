
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Many concurrent SSE streams, for bench/streams.sh: one epoll loop each,
 * so that the mock and the client cost little next to the gateway.
 *
 *   sse_streams mock PORT INTERVAL_MS CHUNKS
 *       answers every POST with a chunked text/event-stream of CHUNKS
 *       chat.completion.chunk events INTERVAL_MS apart (then a usage event
 *       and [DONE]), as an OpenAI-compatible provider streams; each event's
 *       content carries its send time ("t=<us>;", CLOCK_MONOTONIC).
 *       Keeps connections alive.
 *
 *   sse_streams client PORT PATH STREAMS RAMP_MS
 *       opens STREAMS streams to 127.0.0.1:PORT PATH (spread over RAMP_MS),
 *       reads them to [DONE] and prints one line:
 *       streams=N ok=N chunks=N p50_us= p90_us= p99_us= max_us=
 *       with the delay of each event from the mock's write to this read.
 */


#define _GNU_SOURCE     /* memmem, strcasestr */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>


#define MAXFD   65536
#define SLOTS   4096        /* ms timer wheel: INTERVAL_MS < SLOTS */


static uint64_t
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static void
die(const char *what)
{
    perror(what);
    exit(2);
}


static void
nonblock(int fd)
{
    int  one = 1;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}


/* ------------------------------------------------------------ mock */

typedef struct {
    int         state;      /* 0 free, 1 reading, 2 streaming */
    char        in[16384];
    size_t      nin;
    int         sent;
    uint64_t    next;       /* ms of the next event */
    int         link;       /* next fd in the same wheel slot, -1 */
    int         queued;     /* in the wheel (kept across close/accept) */
} mconn_t;

static mconn_t  *mc;
static int       wheel[SLOTS];
static int       interval_ms, chunks;


static void
mock_schedule(int fd)
{
    int  s;

    if (mc[fd].queued) {
        return;     /* one entry per fd: it reads next when its slot runs */
    }

    mc[fd].queued = 1;
    s = mc[fd].next % SLOTS;
    mc[fd].link = wheel[s];
    wheel[s] = fd;
}


static void
mock_write(int fd, const char *p, size_t len)
{
    ssize_t  n;

    /* events are small; a full socket buffer means a stuck reader */
    while (len) {
        n = write(fd, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            return;
        }
        p += n;
        len -= n;
    }
}


static void
mock_event(int fd)
{
    int   n;
    char  data[512], chunk[600];

    if (mc[fd].sent < chunks) {
        n = snprintf(data, sizeof(data),
                "data: {\"id\":\"chatcmpl-stream\",\"object\":"
                "\"chat.completion.chunk\",\"created\":1732550400,"
                "\"model\":\"small-1\",\"choices\":[{\"index\":0,\"delta\":"
                "{\"content\":\" w%d t=%llu;\"},\"finish_reason\":null}]}\n\n",
                mc[fd].sent, (unsigned long long) now_us());

    } else {
        n = snprintf(data, sizeof(data),
                "data: {\"id\":\"chatcmpl-stream\",\"object\":"
                "\"chat.completion.chunk\",\"created\":1732550400,"
                "\"model\":\"small-1\",\"choices\":[{\"index\":0,\"delta\":"
                "{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":"
                "12,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n"
                "data: [DONE]\n\n", chunks, chunks + 12);
    }

    n = snprintf(chunk, sizeof(chunk), "%x\r\n%.*s\r\n%s", n, n, data,
                 mc[fd].sent < chunks ? "" : "0\r\n\r\n");
    mock_write(fd, chunk, n);

    if (mc[fd].sent++ < chunks) {
        mc[fd].next += interval_ms;
        mock_schedule(fd);

    } else {
        mc[fd].state = 1;       /* keepalive: the next request */
        mc[fd].nin = 0;
    }
}


static void
mock_read(int ep, int fd)
{
    char     *h, *cl;
    size_t    need;
    ssize_t   n;
    static const char  hdr[] = "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n";

    for ( ;; ) {
        n = read(fd, mc[fd].in + mc[fd].nin, sizeof(mc[fd].in) - 1 - mc[fd].nin);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            close(fd);
            mc[fd].state = 0;   /* a pending wheel entry is skipped */
            return;
        }

        if (n < 0) {
            return;
        }

        if (mc[fd].state != 1) {
            continue;           /* nothing is expected mid-stream */
        }

        mc[fd].nin += n;
        mc[fd].in[mc[fd].nin] = '\0';

        h = strstr(mc[fd].in, "\r\n\r\n");
        if (h == NULL) {
            if (mc[fd].nin == sizeof(mc[fd].in) - 1) {
                mc[fd].nin = 0;     /* too long: drop it */
            }
            continue;
        }

        need = h + 4 - mc[fd].in;
        *h = '\0';
        cl = strcasestr(mc[fd].in, "content-length:");
        *h = '\r';

        if (cl) {
            need += strtoul(cl + 15, NULL, 10);
        }

        if (mc[fd].nin < need && need < sizeof(mc[fd].in)) {
            continue;
        }

        /* bodies above the buffer: the rest is read and ignored */

        mock_write(fd, hdr, sizeof(hdr) - 1);
        mc[fd].state = 2;
        mc[fd].sent = 0;
        mc[fd].nin = 0;
        mc[fd].next = now_us() / 1000 + interval_ms;
        mock_schedule(fd);
    }
}


static int
mock(int port)
{
    int                  ls, ep, n, i, fd, one, s;
    uint64_t             ms, last;
    struct sockaddr_in   sin;
    struct epoll_event   ev, evs[256];

    mc = calloc(MAXFD, sizeof(mconn_t));
    if (mc == NULL) {
        die("calloc");
    }

    for (i = 0; i < SLOTS; i++) {
        wheel[i] = -1;
    }

    ls = socket(AF_INET, SOCK_STREAM, 0);
    one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (bind(ls, (struct sockaddr *) &sin, sizeof(sin)) < 0
        || listen(ls, 4096) < 0)
    {
        die("mock: bind/listen");
    }

    nonblock(ls);
    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.fd = ls;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    last = now_us() / 1000;

    for ( ;; ) {
        n = epoll_wait(ep, evs, 256, 1);

        for (i = 0; i < n; i++) {
            fd = evs[i].data.fd;

            if (fd == ls) {
                while ((fd = accept(ls, NULL, NULL)) >= 0) {
                    if (fd >= MAXFD) {
                        close(fd);
                        continue;
                    }
                    nonblock(fd);
                    mc[fd].state = 1;
                    mc[fd].nin = 0;
                    ev.events = EPOLLIN;
                    ev.data.fd = fd;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }

            mock_read(ep, fd);
        }

        /* the wheel: every ms slot from the last pass up to now */

        ms = now_us() / 1000;

        for ( /* void */ ; last <= ms; last++) {
            s = last % SLOTS;
            fd = wheel[s];
            wheel[s] = -1;

            while (fd >= 0) {
                int  next = mc[fd].link;

                mc[fd].queued = 0;

                if (mc[fd].state == 2 && mc[fd].next <= ms) {
                    mock_event(fd);

                } else if (mc[fd].state == 2) {
                    mock_schedule(fd);      /* a later lap of the wheel */
                }

                fd = next;
            }
        }
    }

    return 0;
}


/* ---------------------------------------------------------- client */

typedef struct {
    int         state;      /* 0 connecting/sending, 1 reading, 2 done */
    int         body;       /* past the response headers */
    int         data;       /* in a chunk's data (else its size line) */
    size_t      left;       /* data bytes left in the chunk */
    char        carry[128]; /* payload not yet matched */
    size_t      ncarry;
    char        hdr[4];     /* the last bytes of the headers seen */
} cconn_t;


/*
 * The payload of a chunked body: a gateway may cut an event anywhere and
 * frame the pieces as chunks of its own, so "t=<us>;" is looked for in the
 * decoded bytes.  Appends them to out, returns their length.
 */

static size_t
dechunk(cconn_t *c, const char *p, size_t len, char *out)
{
    size_t       n;
    const char  *end;
    char        *o;

    end = p + len;
    o = out;

    while (p < end) {

        if (!c->body) {
            /* the headers end at CRLF CRLF */
            memmove(c->hdr, c->hdr + 1, 3);
            c->hdr[3] = *p++;
            c->body = (memcmp(c->hdr, "\r\n\r\n", 4) == 0);
            continue;
        }

        if (c->data) {
            n = (size_t) (end - p) < c->left ? (size_t) (end - p) : c->left;
            memcpy(o, p, n);
            o += n;
            p += n;
            c->left -= n;
            c->data = (c->left != 0);
            continue;
        }

        /* a size line (CRLF of the previous data first): hex, then LF */

        if (*p == '\n') {
            c->data = (c->left != 0);
        } else if (*p >= '0' && *p <= '9') {
            c->left = c->left * 16 + (*p - '0');
        } else if ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') {
            c->left = c->left * 16 + ((*p | 0x20) - 'a' + 10);
        }

        p++;
    }

    return o - out;
}


static int
cmp_u32(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return x < y ? -1 : x > y;
}


static int
client(int port, const char *path, int streams, int ramp_ms)
{
    int                  ep, n, i, fd, opened, done, ok;
    char                 req[1024], buf[65536 + 128], *p, *q, *end, *t;
    static char          raw[65536];
    size_t               nreq, nd, cap, len, keep;
    ssize_t              r;
    uint64_t             start, now, v;
    uint32_t            *d;
    cconn_t             *cc;
    struct sockaddr_in   sin;
    struct epoll_event   ev, evs[256];
    static const char    body[] = "{\"model\":\"auto\",\"stream\":true,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}]}";

    cc = calloc(MAXFD, sizeof(cconn_t));
    cap = 1 << 20;
    d = malloc(cap * sizeof(uint32_t));

    if (cc == NULL || d == NULL) {
        die("calloc");
    }

    nreq = snprintf(req, sizeof(req),
                    "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    path, sizeof(body) - 1, body);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    ep = epoll_create1(0);
    start = now_us();
    opened = 0;
    done = 0;
    ok = 0;
    nd = 0;

    while (done < streams) {

        /* open the streams due by now on the ramp */

        now = now_us();

        while (opened < streams
               && (ramp_ms == 0
                   || (now - start) * streams >= (uint64_t) opened * ramp_ms * 1000))
        {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0 || fd >= MAXFD) {
                die("client: socket");
            }
            nonblock(fd);
            connect(fd, (struct sockaddr *) &sin, sizeof(sin));
            memset(&cc[fd], 0, sizeof(cconn_t));
            ev.events = EPOLLOUT | EPOLLIN;
            ev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            opened++;
        }

        n = epoll_wait(ep, evs, 256, 1);

        for (i = 0; i < n; i++) {
            fd = evs[i].data.fd;

            if (cc[fd].state == 0 && (evs[i].events & EPOLLOUT)) {
                if (write(fd, req, nreq) != (ssize_t) nreq) {
                    fprintf(stderr, "client: short request write\n");
                }
                cc[fd].state = 1;
                ev.events = EPOLLIN;
                ev.data.fd = fd;
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            }

            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }

            r = read(fd, raw, sizeof(raw));

            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                    continue;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                if (cc[fd].state != 2) {
                    done++;     /* ended before [DONE] */
                }
                cc[fd].state = 2;
                continue;
            }

            now = now_us();
            memcpy(buf, cc[fd].carry, cc[fd].ncarry);
            len = cc[fd].ncarry + dechunk(&cc[fd], raw, r, buf + cc[fd].ncarry);
            end = buf + len;
            p = buf;

            /* "t=<us>;" of each event, complete ones only */

            for ( ;; ) {
                t = memmem(p, end - p, "t=", 2);
                if (t == NULL) {
                    break;
                }
                v = strtoull(t + 2, &q, 10);
                if (q >= end) {
                    break;      /* cut: the rest comes with the next read */
                }
                if (*q == ';' && nd < cap) {
                    d[nd++] = (uint32_t) (now > v ? now - v : 0);
                }
                p = q;
            }

            if (memmem(buf, len, "[DONE]", 6) != NULL) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                cc[fd].state = 2;
                done++;
                ok++;
                continue;
            }

            keep = end - p;
            if (keep > sizeof(cc[fd].carry)) {
                keep = sizeof(cc[fd].carry);
            }
            memcpy(cc[fd].carry, end - keep, keep);
            cc[fd].ncarry = keep;
        }
    }

    qsort(d, nd, sizeof(uint32_t), cmp_u32);

#define pct(x)  (nd ? d[(size_t) ((nd - 1) * (x))] : 0)

    printf("streams=%d ok=%d chunks=%zu p50_us=%u p90_us=%u p99_us=%u "
           "max_us=%u\n", streams, ok, nd, pct(0.50), pct(0.90), pct(0.99),
           nd ? d[nd - 1] : 0);

    return ok == streams ? 0 : 1;
}


int
main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "mock") == 0) {
        interval_ms = atoi(argv[3]);
        chunks = atoi(argv[4]);

        if (interval_ms < 1 || interval_ms >= SLOTS || chunks < 0) {
            fprintf(stderr, "sse_streams: INTERVAL_MS 1..%d\n", SLOTS - 1);
            return 2;
        }

        return mock(atoi(argv[2]));
    }

    if (argc == 6 && strcmp(argv[1], "client") == 0) {
        return client(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]));
    }

    fprintf(stderr, "usage: sse_streams mock PORT INTERVAL_MS CHUNKS\n"
                    "       sse_streams client PORT PATH STREAMS RAMP_MS\n");
    return 2;
}
