/*
 * metrics_http.c - see metrics_http.h. Every socket is non-blocking and every step is one
 * bounded burst of work per poll() turn: accept what is queued, read what arrived, write what
 * the socket takes. A client gets READ_TIMEOUT_S to send its request head and WRITE_TIMEOUT_S
 * to take the answer, then it is closed whatever state it is in.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "internal.h"
#include "log.h"
#include "metrics_http.h"

#define MAX_REQUEST 4096      /* request head, bytes; Prometheus sends about 250 */
#define READ_TIMEOUT_S 2.0
#define WRITE_TIMEOUT_S 5.0
#define LINGER_S 1.0          /* after our FIN: read the client's leftovers so close() sends no RST */
#define ACCEPTS_PER_TURN 64
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum cstate { C_FREE, C_READ, C_WRITE, C_LINGER };

struct client {
    int fd;
    enum cstate st;
    double deadline;          /* task__now_mono() */
    size_t nreq;
    char req[MAX_REQUEST + 1];
    struct mbuf out;
    size_t off;               /* bytes of `out` sent */
};

struct mhttp {
    int lfd;
    char addr[80];
    mhttp_render_fn render;
    void *ud;
    double accept_paused_until; /* out of descriptors: stop polling the listener briefly */
    struct client c[MHTTP_MAX_CLIENTS];
};

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p != NULL && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void mbuf_free(struct mbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void mbuf_label_value(struct mbuf *out, const char *value)
{
    for (const char *c = value; *c != '\0'; c++) {
        if (*c == '\\')
            mbuf_printf(out, "\\\\");
        else if (*c == '"')
            mbuf_printf(out, "\\\"");
        else if (*c == '\n')
            mbuf_printf(out, "\\n");
        else
            mbuf_printf(out, "%c", *c);
    }
}

static const char *const state_names[] = {"free", "read", "write", "linger"};

/* "[HOST:]PORT" or "[V6]:PORT" into host and port; -EINVAL when malformed. */
static int parse_spec(const char *spec, char *host, size_t hsize, char *port, size_t psize)
{
    const char *p = spec;
    const char *colon = strrchr(spec, ':');
    size_t hlen = 0;
    const char *hstart = spec;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        hstart = spec + 1;
        hlen = (size_t)(end - hstart);
        p = end + 2;
    } else if (colon != NULL) {
        if (strchr(spec, ':') != colon)
            return -EINVAL; /* an IPv6 address needs brackets */
        hlen = (size_t)(colon - spec);
        p = colon + 1;
    }
    size_t plen = strlen(p);
    if (plen == 0 || plen > 5 || strspn(p, "0123456789") != plen || atoi(p) > 65535)
        return -EINVAL;
    if (hlen >= hsize || plen >= psize)
        return -EINVAL;
    if (hlen == 0)
        snprintf(host, hsize, "127.0.0.1");
    else
        snprintf(host, hsize, "%.*s", (int)hlen, hstart);
    snprintf(port, psize, "%s", p);
    return 0;
}

static void format_addr(struct mhttp *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(h->lfd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(h->addr, sizeof(h->addr), "[%s]:%d", ip, port);
            return;
        }
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    }
    snprintf(h->addr, sizeof(h->addr), "%s:%d", ip, port);
}

/* A non-blocking listening socket on the first address that binds; -errno otherwise. */
static int listen_on(const char *host, const char *port, char *what, size_t what_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(what, what_size, "resolve %s: %s", host, gai_strerror(g));
        return -EADDRNOTAVAIL;
    }
    int rc = -EADDRNOTAVAIL;
    snprintf(what, what_size, "bind %s:%s", host, port);
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        /* Lets a restarted taskd bind while old connections sit in TIME_WAIT; on Linux it
         * does not let two live listeners share the port. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        rc = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

int mhttp_open(struct mhttp **out, const char *spec, mhttp_render_fn render, void *ud,
               char *what, size_t what_size)
{
    char host[256], port[8];
    if (parse_spec(spec, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(what, what_size, "bad address '%s': expected [HOST:]PORT", spec);
        return -EINVAL;
    }
    int fd = listen_on(host, port, what, what_size);
    if (fd < 0)
        return fd;
    struct mhttp *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        snprintf(what, what_size, "allocate");
        return -ENOMEM;
    }
    h->lfd = fd;
    h->render = render;
    h->ud = ud;
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++)
        h->c[i].fd = -1;
    format_addr(h);
    *out = h;
    return 0;
}

static void drop(struct client *c, const char *why)
{
    if (why != NULL)
        log_event(LV_DEBUG, 0, "metrics_client_dropped", "reason=%s state=%s", why,
                  state_names[c->st]);
    if (c->st == C_WRITE) {
        /* Reset rather than leave the kernel an orphan socket still trying to deliver. */
        struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
    }
    close(c->fd);
    mbuf_free(&c->out);
    c->fd = -1;
    c->st = C_FREE;
    c->nreq = 0;
    c->off = 0;
}

void mhttp_free(struct mhttp *h)
{
    if (h == NULL)
        return;
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++)
        if (h->c[i].st != C_FREE)
            drop(&h->c[i], NULL);
    close(h->lfd);
    free(h);
}

const char *mhttp_addr(const struct mhttp *h)
{
    return h->addr;
}

int mhttp_fds(const struct mhttp *h, int *out, int max)
{
    int n = 0;
    if (h == NULL || max <= 0)
        return 0;
    out[n++] = h->lfd;
    for (int i = 0; i < MHTTP_MAX_CLIENTS && n < max; i++)
        if (h->c[i].st != C_FREE)
            out[n++] = h->c[i].fd;
    return n;
}

int mhttp_pollfds(const struct mhttp *h, struct pollfd *pfd, int max)
{
    int n = 0;
    if (h == NULL)
        return 0;
    if (n < max && task__now_mono() >= h->accept_paused_until)
        pfd[n++] = (struct pollfd){.fd = h->lfd, .events = POLLIN};
    for (int i = 0; i < MHTTP_MAX_CLIENTS && n < max; i++) {
        const struct client *c = &h->c[i];
        if (c->st != C_FREE)
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = c->st == C_WRITE ? POLLOUT : POLLIN};
    }
    return n;
}

int mhttp_next_ms(const struct mhttp *h)
{
    if (h == NULL)
        return -1;
    double first = h->accept_paused_until;
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++)
        if (h->c[i].st != C_FREE && (first == 0 || h->c[i].deadline < first))
            first = h->c[i].deadline;
    if (first == 0)
        return -1;
    double ms = (first - task__now_mono()) * 1000;
    return ms <= 0 ? 0 : (int)ms + 1;
}

static void on_writable(struct client *c, double now)
{
    while (c->off < c->out.len) {
        ssize_t r = send(c->fd, c->out.p + c->off, c->out.len - c->off, MSG_NOSIGNAL);
        if (r > 0) {
            c->off += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* the rest when poll() says POLLOUT */
        drop(c, "send_failed");
        return;
    }
    mbuf_free(&c->out);
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    if (now + LINGER_S < c->deadline)
        c->deadline = now + LINGER_S;
}

/* The answer, headers and body, in c->out; then start writing it. */
static void reply(struct client *c, int status, const char *reason, const struct mbuf *body,
                  const char *text, bool head_only, double now)
{
    size_t len = body != NULL ? body->len : strlen(text);
    mbuf_printf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                "Connection: close\r\n\r\n",
                status, reason, status == 200 ? CONTENT_TYPE : "text/plain; charset=utf-8", len,
                status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head_only && len > 0)
        mbuf_printf(&c->out, "%.*s", (int)len, body != NULL ? body->p : text);
    if (c->out.oom) {
        drop(c, "out_of_memory");
        return;
    }
    c->st = C_WRITE;
    c->off = 0;
    c->deadline = now + WRITE_TIMEOUT_S;
    on_writable(c, now);
}

/* Could the bytes so far begin a request line "METHOD SP target SP HTTP/1.x"? Catches junk
 * (binary, TLS handshakes, other protocols) without waiting for the head to complete. */
static bool plausible(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i == n)
        return i <= 16;
    if (i == 0 || i > 16 || p[i] != ' ')
        return false;
    for (; i < n && p[i] != '\n'; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\r') || ch > 0x7e)
            return false;
    }
    return true;
}

/* The next token of the request line, separated by blanks; its length, 0 at the line's end. */
static size_t token(const char **p, const char *end, const char **tok)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    *tok = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    return (size_t)(*p - *tok);
}

int mhttp_parse_head(const char *p, size_t n, size_t max, struct mhttp_req *out)
{
    *out = (struct mhttp_req){0};
    /* Only the head decides: bytes after it (a body, a pipelined request) arrive in the same
     * read or a later one, and the answer must not depend on which (found by fuzz_metrics). */
    const char *crlf = memmem(p, n, "\r\n\r\n", 4), *lf = memmem(p, n, "\n\n", 2);
    const char *stop = crlf == NULL ? lf : lf == NULL || crlf < lf ? crlf : lf;
    size_t head_len = stop != NULL ? (size_t)(stop - p) : n;
    if (memchr(p, '\0', head_len) != NULL || !plausible(p, head_len))
        return out->status = 400;
    if (stop == NULL)
        return out->status = n >= max ? 431 : 0;
    /* plausible() has seen the whole first line: printable ASCII and blanks only. */
    const char *eol = memchr(p, '\n', n);
    const char *end = eol != NULL && eol > p && eol[-1] == '\r' ? eol - 1 : eol;
    const char *method, *target, *version, *extra;
    size_t ml = token(&p, end, &method), tl = token(&p, end, &target);
    size_t vl = token(&p, end, &version);
    if (ml == 0 || ml > 16 || tl == 0 || tl > 1023 || vl < 8 || vl > 15 ||
        strncmp(version, "HTTP/1.", 7) != 0 || token(&p, end, &extra) != 0)
        return out->status = 400;
    out->head = ml == 4 && memcmp(method, "HEAD", 4) == 0;
    if (!out->head && !(ml == 3 && memcmp(method, "GET", 3) == 0))
        return out->status = 405;
    size_t plen = 0;
    while (plen < tl && target[plen] != '?')
        plen++;
    if (plen != 8 || memcmp(target, "/metrics", 8) != 0)
        return out->status = 404;
    return out->status = 200;
}

static void answer(struct mhttp *h, struct client *c, const struct mhttp_req *rq, double now)
{
    switch (rq->status) {
    case 200:
        break;
    case 404:
        reply(c, 404, "Not Found", NULL, "not found; try /metrics\n", rq->head, now);
        return;
    case 405:
        reply(c, 405, "Method Not Allowed", NULL, "only GET and HEAD\n", false, now);
        return;
    case 431:
        reply(c, 431, "Request Header Fields Too Large", NULL, "request too large\n", false,
              now);
        return;
    default:
        reply(c, 400, "Bad Request", NULL, "bad request\n", false, now);
        return;
    }
    struct mbuf body = {0};
    h->render(h->ud, &body);
    if (body.oom)
        reply(c, 500, "Internal Server Error", NULL, "out of memory\n", rq->head, now);
    else
        reply(c, 200, "OK", &body, NULL, rq->head, now);
    mbuf_free(&body);
}

static void on_readable(struct mhttp *h, struct client *c, double now)
{
    for (;;) {
        size_t room = MAX_REQUEST - c->nreq;
        ssize_t r = room == 0 ? 0 : recv(c->fd, c->req + c->nreq, room, 0);
        if (room > 0 && r == 0) {
            drop(c, "eof_before_request");
            return;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0) {
            drop(c, "recv_failed");
            return;
        }
        c->nreq += (size_t)r;
        c->req[c->nreq] = '\0';
        struct mhttp_req rq;
        if (mhttp_parse_head(c->req, c->nreq, MAX_REQUEST, &rq) != 0) {
            answer(h, c, &rq, now);
            return;
        }
    }
}

/* Discard what the client still sends after our answer, until its EOF. */
static void on_linger(struct client *c)
{
    char scratch[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = recv(c->fd, scratch, sizeof(scratch), 0);
        if (r > 0)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        drop(c, NULL);
        return;
    }
}

static struct client *free_client(struct mhttp *h)
{
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++)
        if (h->c[i].st == C_FREE)
            return &h->c[i];
    return NULL;
}

static void accept_clients(struct mhttp *h, double now)
{
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: the listener stays readable; do not spin on it. */
                log_event(LV_WARN, errno, "metrics_accept_failed", "action=\"pause 100 ms\"");
                h->accept_paused_until = now + 0.1;
            }
            return;
        }
        struct client *c = free_client(h);
        if (c == NULL) {
            log_event(LV_DEBUG, 0, "metrics_client_dropped", "reason=too_many_clients");
            close(fd);
            continue;
        }
        *c = (struct client){.fd = fd, .st = C_READ, .deadline = now + READ_TIMEOUT_S};
    }
}

static struct client *client_by_fd(struct mhttp *h, int fd)
{
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++)
        if (h->c[i].st != C_FREE && h->c[i].fd == fd)
            return &h->c[i];
    return NULL;
}

void mhttp_on_poll(struct mhttp *h, const struct pollfd *pfd, int n)
{
    if (h == NULL)
        return;
    double now = task__now_mono();
    if (h->accept_paused_until != 0 && now >= h->accept_paused_until)
        h->accept_paused_until = 0;
    for (int k = 0; k < n; k++) {
        if (pfd[k].revents == 0)
            continue;
        if (pfd[k].fd == h->lfd) {
            accept_clients(h, now);
            continue;
        }
        struct client *c = client_by_fd(h, pfd[k].fd);
        if (c == NULL)
            continue;
        if (c->st == C_READ)
            on_readable(h, c, now);
        else if (c->st == C_WRITE)
            on_writable(c, now);
        else
            on_linger(c);
    }
    for (int i = 0; i < MHTTP_MAX_CLIENTS; i++) {
        struct client *c = &h->c[i];
        if (c->st != C_FREE && now >= c->deadline)
            drop(c, c->st == C_LINGER ? NULL : "timeout");
    }
}
