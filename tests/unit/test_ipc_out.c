/*
 * test_ipc_out.c - the supervisor's side of the pool IPC never blocks (taskd/ipc.c): frames
 * queue in an ipc_out, ipc_flush() writes what a non-blocking socket takes and keeps the rest,
 * and the child reads every frame whole and in order. A frame larger than the socket's buffer
 * goes out over several flushes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "ipc.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
}

static json_object *frame(int i, size_t pad)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "i", json_object_new_int(i));
    char *p = malloc(pad + 1);
    memset(p, 'x', pad);
    p[pad] = '\0';
    json_object_object_add(o, "pad", json_object_new_string(p));
    free(p);
    return o;
}

static void small_frames_go_at_once(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ipc_out out = {0};
    for (int i = 0; i < 3; i++) {
        json_object *f = frame(i, 10);
        assert_int_equal(ipc_queue(&out, f), 0);
        json_object_put(f);
        assert_int_equal(ipc_flush(sv[0], &out), 0);
        assert_false(ipc_pending(&out));
    }
    for (int i = 0; i < 3; i++) {
        json_object *got = ipc_recv(sv[1]);
        assert_non_null(got);
        assert_int_equal(json_object_get_int(json_object_object_get(got, "i")), i);
        json_object_put(got);
    }
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void a_full_socket_keeps_the_rest(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ipc_out out = {0};
    const size_t big = 1 << 20; /* far past the socket's buffer */
    for (int i = 0; i < 2; i++) {
        json_object *f = frame(i, big);
        assert_int_equal(ipc_queue(&out, f), 0);
        json_object_put(f);
    }
    assert_int_equal(ipc_flush(sv[0], &out), 0); /* never blocks */
    assert_true(ipc_pending(&out));
    /* The reader takes frames as the writer flushes whenever the socket has room. */
    int seen = 0;
    struct ipc_buf in = {0};
    int bad = 0;
    for (int rounds = 0; seen < 2 && rounds < 100000; rounds++) {
        assert_int_equal(ipc_flush(sv[0], &out), 0);
        int r = ipc_fill(sv[1], &in);
        assert_true(r > 0 || r == -EAGAIN);
        json_object *got;
        while ((got = ipc_next(&in, &bad)) != NULL) {
            assert_int_equal(json_object_get_int(json_object_object_get(got, "i")), seen);
            assert_int_equal(strlen(json_object_get_string(json_object_object_get(got, "pad"))),
                             big);
            json_object_put(got);
            seen++;
        }
        assert_int_equal(bad, 0);
    }
    assert_int_equal(seen, 2);
    assert_false(ipc_pending(&out));
    ipc_buf_free(&in);
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void a_gone_peer_is_an_error(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    close(sv[1]);
    struct ipc_out out = {0};
    json_object *f = frame(1, 10);
    assert_int_equal(ipc_queue(&out, f), 0);
    json_object_put(f);
    assert_int_equal(ipc_flush(sv[0], &out), -EPIPE);
    ipc_out_free(&out);
    close(sv[0]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as taskd: a gone child is an error code, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_frames_go_at_once),
        cmocka_unit_test(a_full_socket_keeps_the_rest),
        cmocka_unit_test(a_gone_peer_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
