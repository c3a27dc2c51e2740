/* ipc.c - see ipc.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"
#include "ipc.h"
#include "task_limits.h"

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* The supervisor's end is non-blocking; a large frame (a 1 MB argument) fills
                 * the socket buffer while the child reads it: wait for room. */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, 30000) <= 0)
                    return -ETIMEDOUT;
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ipc_send(int fd, json_object *o)
{
    size_t len;
    const char *text = task__json_str(o, &len);
    uint32_t hdr = htonl((uint32_t)len);
    /* One write for small frames keeps frames from interleaving less often than a lock would;
     * callers still serialise writers. */
    char small[4096];
    if (len + 4 <= sizeof(small)) {
        memcpy(small, &hdr, 4);
        memcpy(small + 4, text, len);
        return write_all(fd, small, len + 4);
    }
    int rc = write_all(fd, (const char *)&hdr, 4);
    return rc != 0 ? rc : write_all(fd, text, len);
}

int ipc_queue(struct ipc_out *o, json_object *frame)
{
    size_t len;
    const char *text = task__json_str(frame, &len);
    if (o->off == o->len)
        o->off = o->len = 0;
    if (o->cap - o->len < len + 4) {
        if (o->off > 0) { /* move the unwritten rest to the front before growing */
            memmove(o->p, o->p + o->off, o->len - o->off);
            o->len -= o->off;
            o->off = 0;
        }
        size_t cap = o->cap ? o->cap : 65536;
        while (cap - o->len < len + 4)
            cap *= 2;
        if (cap != o->cap) {
            char *p = realloc(o->p, cap);
            if (p == NULL)
                return -ENOMEM;
            o->p = p;
            o->cap = cap;
        }
    }
    uint32_t hdr = htonl((uint32_t)len);
    memcpy(o->p + o->len, &hdr, 4);
    memcpy(o->p + o->len + 4, text, len);
    o->len += len + 4;
    return 0;
}

int ipc_flush(int fd, struct ipc_out *o)
{
    while (o->off < o->len) {
        ssize_t w = write(fd, o->p + o->off, o->len - o->off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        o->off += (size_t)w;
    }
    o->off = o->len = 0;
    return 0;
}

void ipc_out_free(struct ipc_out *o)
{
    free(o->p);
    memset(o, 0, sizeof(*o));
}

int ipc_fill(int fd, struct ipc_buf *b)
{
    if (b->cap - b->len < 65536) {
        size_t cap = b->cap ? b->cap * 2 : 131072;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    ssize_t r = read(fd, b->p + b->len, b->cap - b->len);
    if (r < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    b->len += (size_t)r;
    return (int)r;
}

/* A frame is one whole JSON value: a value that ends early ("{}x") or a bare number that only
 * the end of input completes ("12") is as broken as a frame that is not JSON at all. */
static json_object *ipc_parse(const char *p, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(TASK__IPC_MAX_DEPTH);
    if (tok == NULL)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, p, (int)n);
    if (o != NULL && json_tokener_get_parse_end(tok) != n) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

json_object *ipc_next(struct ipc_buf *b, int *bad)
{
    *bad = 0;
    if (b->len < 4)
        return NULL;
    uint32_t n;
    memcpy(&n, b->p, 4);
    n = ntohl(n);
    if (n > IPC_MAX_FRAME) {
        *bad = 1;
        return NULL;
    }
    if (b->len < 4 + (size_t)n)
        return NULL;
    json_object *o = ipc_parse(b->p + 4, n);
    if (o == NULL)
        *bad = 1;
    memmove(b->p, b->p + 4 + n, b->len - 4 - n);
    b->len -= 4 + (size_t)n;
    return o;
}

void ipc_buf_free(struct ipc_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

json_object *ipc_recv(int fd)
{
    uint32_t n;
    if (read_all(fd, (char *)&n, 4) != 0)
        return NULL;
    n = ntohl(n);
    if (n > IPC_MAX_FRAME)
        return NULL;
    char *p = malloc(n ? n : 1);
    if (p == NULL || read_all(fd, p, n) != 0) {
        free(p);
        return NULL;
    }
    json_object *o = ipc_parse(p, n);
    free(p);
    return o;
}
