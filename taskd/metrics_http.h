/*
 * metrics_http.h - a tiny HTTP/1.x server for GET /metrics that lives in the supervisor's
 * poll() loop: a non-blocking listening socket and a few clients, each allowed one bounded
 * request and one response, then closed. Nothing in it blocks: a client that is slow, silent
 * or sends junk is answered 400 or dropped at its deadline, and task processing never waits.
 */
#ifndef TASKD_METRICS_HTTP_H
#define TASKD_METRICS_HTTP_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#define MHTTP_MAX_CLIENTS 8
#define MHTTP_MAX_FDS (1 + MHTTP_MAX_CLIENTS)

struct mhttp;

/* A growable text buffer (an answer being built); `oom` stays set after a failed allocation. */
struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
};
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);
/* Append `value` escaped as a label value of the text format (backslash, quote, newline). */
void mbuf_label_value(struct mbuf *out, const char *value);

/*
 * mhttp_parse_head - what to answer to the request head received so far (`n` bytes of `p`,
 * borrowed, need not end in NUL); `max` is the most a head may take. Pure: no I/O, no state.
 * Returns 0 while the head is incomplete and still plausible; else the status to answer, also in
 * out->status: 200 (GET or HEAD /metrics, out->head for HEAD), 400 (junk, a NUL, a malformed
 * request line), 404 (another path), 405 (another method), 431 (no end of head within `max`).
 */
struct mhttp_req {
    int status;
    bool head;
};
int mhttp_parse_head(const char *p, size_t n, size_t max, struct mhttp_req *out);

/* Fills `out` with the body of a 200 answer to GET /metrics. */
typedef void (*mhttp_render_fn)(void *ud, struct mbuf *out);

/*
 * Listen on `spec`, "[HOST:]PORT" (HOST defaults to 127.0.0.1; "[::1]:PORT" for IPv6; PORT 0
 * picks a free one). On success *out is the server and 0 is returned. On failure: -errno (or
 * -EINVAL for a malformed spec) and `what` names the step, e.g. "bind 127.0.0.1:9100".
 */
int mhttp_open(struct mhttp **out, const char *spec, mhttp_render_fn render, void *ud,
               char *what, size_t what_size);
void mhttp_free(struct mhttp *h);   /* NULL: no-op */
/* The bound address, "HOST:PORT" with the real port. */
const char *mhttp_addr(const struct mhttp *h);

/* Entries to poll (at most MHTTP_MAX_FDS); returns how many were written. h NULL: 0. */
int mhttp_pollfds(const struct mhttp *h, struct pollfd *pfd, int max);
/* After poll(): serve what is ready and drop clients past their deadline. */
void mhttp_on_poll(struct mhttp *h, const struct pollfd *pfd, int n);
/* Milliseconds until the next client deadline; -1: none. */
int mhttp_next_ms(const struct mhttp *h);
/* The server's descriptors, for a forked child to close (so a child never keeps a client's
 * connection or the port open). Returns how many were written to `out`. */
int mhttp_fds(const struct mhttp *h, int *out, int max);

#endif
