/* A swarm of WebSocket subscribers that count what they receive, in one process, in C.
 *
 * The scale-out benchmark (bench/redis_scale.py) needs subscribers that cost
 * less CPU than the servers they measure: on a machine with two cores, a
 * Python generator reading a million deliveries a second takes most of a
 * core, which two server nodes would need. This one parses the WebSocket
 * frames and counts messages (newlines + 1 per text frame, as bench/wsraw.py
 * does) and publications among them (`{"type":"pub"` at the start of a
 * line), and nothing more.
 *
 * Usage (by bench/subscribers.py, which builds it with the system's cc):
 *
 *     BENCH_TOKEN=T subscribers HOST CHANNEL PORT:COUNT [PORT:COUNT ...]
 *
 * Each connection upgrades (subprotocol stagewire.json), sends `connect` with
 * the token and `subscribe` to CHANNEL in one frame, and answers pings. At
 * most 200 handshakes are in flight. On stdout, one JSON line each:
 *
 *     {"ready": N}                      every connection got its two replies
 *     {"messages": M, "pubs": P, "frames": F, "closed": C}   for each line "count" on stdin
 *
 * It exits when stdin closes. 127.0.0.1 only in the benchmark; nothing is
 * retried: a connection that fails counts as closed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define INFLIGHT 200
#define STDIN_TAG ((uint64_t)-1)

enum { HANDSHAKE, OPEN, CLOSED };

typedef struct {
    int fd;
    int state;
    unsigned char *buf;
    size_t len, cap;
    long messages;
} conn_t;

static conn_t *conns;
static long total_messages, total_pubs, total_frames, closed_count, ready_count, opened;
static const char PUB[] = "{\"type\":\"pub\"";
static long nconns;
static int epfd;
static char request[1024];
static size_t request_len;
static unsigned char *hello;  /* the masked frame with connect and subscribe */
static size_t hello_len;

static void fail(const char *what) {
    perror(what);
    exit(2);
}

static void send_all(conn_t *c, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue; /* small control frames: the socket drains at once on loopback */
            c->state = CLOSED;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* A client frame: FIN, opcode, a zero masking key (allowed: the payload is sent as is). */
static unsigned char *client_frame(int opcode, const unsigned char *payload, size_t n, size_t *out_len) {
    unsigned char *f = malloc(n + 14);
    size_t h = 0;
    f[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        f[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(n >> 8);
        f[h++] = (unsigned char)n;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memset(f + h, 0, 4);
    h += 4;
    memcpy(f + h, payload, n);
    *out_len = h + n;
    return f;
}

static void close_conn(conn_t *c) {
    if (c->state != CLOSED) {
        c->state = CLOSED;
        closed_count++;
    }
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static void open_conn(long i, const char *host, int port) {
    conn_t *c = &conns[i];
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        fail("socket");
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close_conn(c);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->state = HANDSHAKE;
    c->cap = 65536;
    c->buf = malloc(c->cap);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        fail("epoll_ctl");
    send_all(c, request, request_len);
}

/* Lines of a frame; *pubs gets those that are publications. */
static long count_lines(const unsigned char *p, size_t n, long *pubs) {
    long lines = 0;
    const unsigned char *end = p + n;
    for (;;) {
        lines++;
        if ((size_t)(end - p) >= sizeof PUB - 1 && memcmp(p, PUB, sizeof PUB - 1) == 0)
            (*pubs)++;
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return lines;
        p = nl + 1;
    }
}

static void on_frames(conn_t *c) {
    size_t at = 0;
    while (c->len - at >= 2) {
        unsigned char *f = c->buf + at;
        int opcode = f[0] & 0x0F;
        uint64_t n = f[1] & 0x7F;
        size_t h = 2;
        if (n == 126) {
            if (c->len - at < 4)
                break;
            n = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (n == 127) {
            if (c->len - at < 10)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | f[2 + i];
            h = 10;
        }
        if (c->len - at < h + n)
            break;
        unsigned char *payload = f + h;
        if (opcode == 0x1) {
            long pubs = 0;
            long m = count_lines(payload, (size_t)n, &pubs);
            total_pubs += pubs;
            if (c->messages < 2 && c->messages + m >= 2)
                ready_count++;
            c->messages += m;
            total_messages += m;
            total_frames++;
        } else if (opcode == 0x9) {
            size_t len;
            unsigned char *pong = client_frame(0xA, payload, (size_t)n, &len);
            send_all(c, pong, len);
            free(pong);
        } else if (opcode == 0x8) {
            close_conn(c);
            return;
        }
        at += h + (size_t)n;
    }
    memmove(c->buf, c->buf + at, c->len - at);
    c->len -= at;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r == 0) {
            close_conn(c);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            close_conn(c);
            return;
        }
        c->len += (size_t)r;
        if (c->state == HANDSHAKE) {
            unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end == NULL)
                continue;
            if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0) {
                close_conn(c);
                return;
            }
            size_t header = (size_t)(end + 4 - c->buf);
            memmove(c->buf, c->buf + header, c->len - header);
            c->len -= header;
            c->state = OPEN;
            send_all(c, hello, hello_len);
        }
        if (c->state == OPEN)
            on_frames(c);
        if (c->state == CLOSED)
            return;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: BENCH_TOKEN=T %s HOST CHANNEL PORT:COUNT [PORT:COUNT ...]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *channel = argv[2], *token = getenv("BENCH_TOKEN");
    if (token == NULL || strlen(token) > 4000 || strlen(channel) > 200) {
        fprintf(stderr, "BENCH_TOKEN missing, or the token or channel too long\n");
        return 2;
    }
    int ports[64];
    long counts[64];
    int nports = argc - 3;
    if (nports > 64)
        nports = 64;
    for (int i = 0; i < nports; i++) {
        if (sscanf(argv[3 + i], "%d:%ld", &ports[i], &counts[i]) != 2)
            return 2;
        nconns += counts[i];
    }
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);

    request_len = (size_t)snprintf(request, sizeof request,
        "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: c3RhZ2V3aXJlLWJlbmNoIQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: stagewire.json\r\n\r\n", host);
    char text[4400];
    int n = snprintf(text, sizeof text,
        "{\"id\":1,\"type\":\"connect\",\"token\":\"%s\"}\n{\"id\":2,\"type\":\"subscribe\",\"channel\":\"%s\"}",
        token, channel);
    hello = client_frame(0x1, (unsigned char *)text, (size_t)n, &hello_len);

    conns = calloc((size_t)nconns, sizeof *conns);
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    int port_index = 0;
    long left_on_port = counts[0];
    int announced = 0;
    char line[64];
    size_t line_len = 0;
    struct epoll_event events[512];
    for (;;) {
        /* Open more while fewer than INFLIGHT handshakes are unfinished. */
        while (opened < nconns && opened - ready_count - closed_count < INFLIGHT) {
            while (left_on_port == 0) {
                port_index++;
                left_on_port = counts[port_index];
            }
            open_conn(opened++, host, ports[port_index]);
            left_on_port--;
        }
        if (!announced && ready_count + closed_count >= nconns) {
            printf("{\"ready\": %ld, \"closed\": %ld}\n", ready_count, closed_count);
            fflush(stdout);
            announced = 1;
        }
        int k = epoll_wait(epfd, events, 512, 100);
        for (int e = 0; e < k; e++) {
            if (events[e].data.u64 == STDIN_TAG) {
                ssize_t r = read(0, line + line_len, sizeof line - line_len - 1);
                if (r <= 0)
                    return 0;
                line_len += (size_t)r;
                char *nl;
                while ((nl = memchr(line, '\n', line_len)) != NULL) {
                    printf("{\"messages\": %ld, \"pubs\": %ld, \"frames\": %ld, \"closed\": %ld}\n",
                           total_messages, total_pubs, total_frames, closed_count);
                    fflush(stdout);
                    size_t used = (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, line_len - used);
                    line_len -= used;
                }
                if (line_len == sizeof line - 1)
                    line_len = 0;
                continue;
            }
            conn_t *c = &conns[events[e].data.u64];
            if (c->state != CLOSED)
                on_readable(c);
        }
    }
}
