/*
 * test_metrics_http.c - taskd's /metrics HTTP endpoint on its own (no broker): address parsing
 * and bind errors, HEAD, an oversized request head, and a client that asks for a large answer
 * and never reads it: it is cut off at the write deadline while every loop turn stays short
 * (the server never blocks the supervisor's loop).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "metrics_http.h"

static size_t body_bytes = 100;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `body_bytes` of valid exposition text. */
static void render(void *ud, struct mbuf *out)
{
    (void)ud;
    for (size_t i = 0; out->len + 32 < body_bytes; i++)
        mbuf_printf(out, "taskd_test_line %zu\n", i);
}

struct server {
    struct mhttp *h;
    int port;
    pthread_t thread;
    atomic_bool stop;
    double longest_turn_s; /* the longest mhttp_on_poll() call */
};

static void *serve(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd[MHTTP_MAX_FDS];
        int n = mhttp_pollfds(s->h, pfd, MHTTP_MAX_FDS);
        int ready = poll(pfd, (nfds_t)n, 20);
        double t0 = now_s();
        mhttp_on_poll(s->h, pfd, ready > 0 ? n : 0);
        double took = now_s() - t0;
        if (took > s->longest_turn_s)
            s->longest_turn_s = took;
    }
    return NULL;
}

static void server_start(struct server *s)
{
    memset(s, 0, sizeof(*s));
    char what[300];
    assert_int_equal(mhttp_open(&s->h, "0", render, NULL, what, sizeof(what)), 0);
    const char *addr = mhttp_addr(s->h);
    assert_int_equal(strncmp(addr, "127.0.0.1:", 10), 0);
    s->port = atoi(addr + 10);
    assert_true(s->port > 0);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    mhttp_free(s->h);
}

static int tcp_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Everything the server sends until it closes (or `timeout_s`); *closed says which. */
static size_t read_all(int fd, char *buf, size_t size, double timeout_s, bool *closed)
{
    size_t got = 0;
    double deadline = now_s() + timeout_s;
    *closed = false;
    while (now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        char tmp[65536];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r <= 0) {
            *closed = true;
            break;
        }
        if (buf != NULL && got + (size_t)r < size) {
            memcpy(buf + got, tmp, (size_t)r);
            buf[got + (size_t)r] = '\0';
        }
        got += (size_t)r;
    }
    return got;
}

static void addresses_are_parsed_and_bind_errors_reported(void **state)
{
    (void)state;
    struct mhttp *h = NULL;
    char what[300];
    const char *bad[] = {"", "x", "localhost:http", "1:2:3", "70000", "127.0.0.1:", "[::1]9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mhttp_open(&h, bad[i], render, NULL, what, sizeof(what)), -EINVAL);
        assert_non_null(strstr(what, "expected [HOST:]PORT"));
    }
    struct mhttp *a = NULL, *b = NULL;
    assert_int_equal(mhttp_open(&a, "127.0.0.1:0", render, NULL, what, sizeof(what)), 0);
    const char *addr = mhttp_addr(a);
    int port = atoi(strrchr(addr, ':') + 1);
    assert_true(port > 0);
    char spec[32];
    snprintf(spec, sizeof(spec), "%d", port); /* host defaults to 127.0.0.1: the same socket */
    assert_int_equal(mhttp_open(&b, spec, render, NULL, what, sizeof(what)), -EADDRINUSE);
    char want[64];
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d", port);
    assert_string_equal(what, want);
    assert_null(b);
    mhttp_free(a);
}

static void label_values_are_escaped(void **state)
{
    (void)state;
    struct mbuf b = {0};
    mbuf_label_value(&b, "a\\b\"c\nd.e");
    assert_false(b.oom);
    assert_string_equal(b.p, "a\\\\b\\\"c\\nd.e");
    mbuf_free(&b);
}

static void head_gets_headers_only(void **state)
{
    (void)state;
    struct server s;
    body_bytes = 1000;
    server_start(&s);
    int fd = tcp_connect(s.port, 0);
    const char *req = "HEAD /metrics HTTP/1.0\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    char buf[4096] = "";
    bool closed;
    size_t n = read_all(fd, buf, sizeof(buf), 3, &closed);
    assert_true(closed);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(buf, "\r\nContent-Length: "));
    assert_int_equal(strlen(strstr(buf, "\r\n\r\n")), 4); /* no body */
    assert_true(n < 300);
    close(fd);
    server_stop(&s);
}

static void oversized_request_head_gets_431(void **state)
{
    (void)state;
    struct server s;
    server_start(&s);
    int fd = tcp_connect(s.port, 0);
    char req[6000];
    memset(req, 'a', sizeof(req));
    memcpy(req, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
    ssize_t sent = send(fd, req, sizeof(req), MSG_NOSIGNAL);
    assert_true(sent > 4096);
    char buf[4096] = "";
    bool closed;
    read_all(fd, buf, sizeof(buf), 3, &closed);
    assert_true(closed);
    assert_int_equal(strncmp(buf, "HTTP/1.1 431 ", 13), 0);
    close(fd);
    server_stop(&s);
}

static void a_client_that_never_reads_is_cut_off_without_blocking(void **state)
{
    (void)state;
    struct server s;
    body_bytes = 16u << 20; /* far more than loopback socket buffers hold */
    server_start(&s);
    int fd = tcp_connect(s.port, 4096);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    double t0 = now_s();
    /* Meanwhile, other clients are served at once. */
    usleep(500000);
    int other = tcp_connect(s.port, 0);
    const char *notfound = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(send(other, notfound, strlen(notfound), 0), (ssize_t)strlen(notfound));
    char buf[512] = "";
    bool closed;
    double t1 = now_s();
    read_all(other, buf, sizeof(buf), 2, &closed);
    double other_s = now_s() - t1;
    assert_true(closed);
    assert_int_equal(strncmp(buf, "HTTP/1.1 404 ", 13), 0);
    close(other);
    /* Past the 5 s write deadline the server has given up on the reader. */
    usleep(6000000);
    size_t got = read_all(fd, NULL, 0, 3, &closed);
    double total = now_s() - t0;
    assert_true(closed);
    assert_true(got < body_bytes);
    fprintf(stderr, "non-reader: %zu of %zu bytes taken, closed; longest loop turn %.1f ms; "
            "another client answered in %.1f ms\n", got, body_bytes, s.longest_turn_s * 1000,
            other_s * 1000);
    assert_true(total < 10);
    close(fd);
    server_stop(&s);
    /* Rendering 16 MB takes a while; every other turn (accept, read, partial write) is short. */
    assert_true(other_s < 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_are_parsed_and_bind_errors_reported),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(head_gets_headers_only),
        cmocka_unit_test(oversized_request_head_gets_431),
        cmocka_unit_test(a_client_that_never_reads_is_cut_off_without_blocking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
